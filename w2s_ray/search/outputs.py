"""What a finished search leaves behind: summary table, best config, trials parquet."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from w2s_ray.analysis.results import compare
from w2s_ray.analysis.summary import mean_std
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.stages import StageResult
from w2s_ray.train.executor import Executor

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from w2s_ray.search.context import SearchContext
    from w2s_ray.search.driver import SearchPlan
    from w2s_ray.search.prune import PruneReport


def _trial_frame(grid: ResultGrid) -> pd.DataFrame:
    frame = grid.get_dataframe()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else v)
    return frame


def _config_of(row: pd.Series) -> dict[str, Any]:
    return {k[len("config/"):]: v for k, v in row.items() if k.startswith("config/") and not _missing(v)}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _student(plan: SearchPlan, key: str) -> StageResult:
    path = StageCache(plan.cache_uri).get("student", key)
    if path is None:
        raise RuntimeError(f"student stage {key} is missing from the cache")
    return StageResult("student", key, path, plan.strong, {})


# The selection mode a search did not use; its pick from the same trials is reported beside.
OTHER_CRITERION = {"gt": "weak", "weak": "gt"}
def confirmed(label: str) -> bool:
    """Rows --confirm-seeds retrains: every baseline and the best config."""
    return label == "best" or label.startswith("baseline")
ROW_NOTES = {
    "best_by_weak": "best_by_weak: the trial `--select-on weak` would pick from these same trials (no GT labels: "
                    "agreement with weak labels first, confidence as a tie-break, a student predicting one class on "
                    "more than 90% of validation last; this favours imitation of the weak model).",
    "best_by_gt": "best_by_gt: the trial GT validation PGR would pick from these same trials (uses GT labels).",
}


def summarize_search(plan: SearchPlan, ctx: SearchContext, grid: ResultGrid) -> dict[str, Any]:
    """Baseline (first points_to_evaluate), best trial and the other criterion's pick: val, then once test.

    Every trial records both objectives, so the pick of the selection mode the search did not
    use (``best_by_weak`` or ``best_by_gt``) costs no training and shows how the two modes differ.
    """
    settings = plan.settings
    frame = _trial_frame(grid)
    finished = frame[frame.get("final", pd.Series(dtype=float)).fillna(0) == 1] if "final" in frame else frame.iloc[0:0]
    if finished.empty:
        raise RuntimeError("no trial finished; see the Tune output above")
    rows: dict[str, Any] = {}
    for i, point in enumerate(ctx.baselines or plan.space.points_to_evaluate()):
        is_base = finished.apply(lambda r: all(_same(_config_of(r).get(k), v) for k, v in point.items()), axis=1)  # noqa: B023 (called at once)
        label = "baseline" if i == 0 else f"baseline_{point.get('loss', i)}"
        if label not in rows:
            rows[label] = finished[is_base].iloc[0] if is_base.any() else None
    rows["best"] = finished.loc[finished["objective"].astype(float).idxmax()]
    other = OTHER_CRITERION[plan.settings.select_on]
    other_scores = finished.get(f"objective_{other}")
    rows[f"best_by_{other}"] = finished.loc[other_scores.astype(float).idxmax()] if other_scores is not None else None
    from w2s_ray.tracking.uri import redact

    # `report` logs its plots where the search tracked; a URI holding a password is not written down
    tracking = plan.tracking_uri if redact(plan.tracking_uri) == plan.tracking_uri else None
    report: dict[str, Any] = {"name": plan.name, "task": plan.task, "select_on": plan.settings.select_on,
                              "tracking_uri": tracking, "experiment": plan.experiment,
                              "confirm_planned": int(plan.confirm_seeds or 0),
                              "n_trials": len(frame), "n_finished": len(finished),
                              "references": ctx.shared.selection, "rows": {}}
    for label, row in rows.items():
        if row is None:
            continue
        student = _student(plan, row["student_key"])
        assert plan.data is not None  # prepared by plan_search
        report["rows"][label] = {
            "trial_id": row["trial_id"], "config": _config_of(row),
            "val": compare(plan.data, ctx.shared.weak, student, ctx.shared.ceiling, "val", settings.val_labels,
                           settings.min_gap, settings.gap_z),
            "test": compare(plan.data, ctx.shared.weak, student, ctx.shared.ceiling, "test", None, settings.min_gap,
                            settings.gap_z),
        }
    best = report["rows"]["best"]
    report["best_config"] = plain({"task": plan.task, "weak": plan.weak, "strong": plan.strong,
                             "ladder": plan.ladder, "student": best["config"], "references": {
                                 k: v["chosen"] for k, v in ctx.shared.selection.items()
                                 if isinstance(v, dict) and "chosen" in v},
                             "val_pgr": best["val"]["pgr"], "test_pgr": best["test"]["pgr"]})
    report["rows"] = plain(report["rows"])
    report["final_metrics"] = {f"{label}_{split}_{m}": v
                               for label, r in report["rows"].items() for split in ("val", "test")
                               for m, v in r[split].items() if m in ("pgr", "student_acc", "weak_acc", "ceiling_acc")
                               and v is not None}
    report["table"] = format_summary(report)
    print(report["table"])
    return report


def plain(obj: Any) -> Any:
    """numpy scalars and other non-JSON values → plain Python (for YAML, JSON and MLflow tags)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def _pgr_cell(entry: dict[str, Any]) -> str:
    return f"{entry['pgr']:.3f}" if entry["pgr"] is not None else f"undefined ({entry['pgr_reason']})"


def _gap_cell(entry: dict[str, Any]) -> str:
    """``ceiling − weak ± its paired standard error (n labels)``."""
    se = entry.get("gap_se")
    return f"{entry['gap']:.3f}" + (f" ± {se:.3f}" if se is not None else "") + f" (n={entry['n_labels']})"


def format_summary(report: dict[str, Any]) -> str:
    lines = [f"search `{report['name']}` · task `{report['task']}` · select-on `{report['select_on']}` · "
             f"{report['n_finished']}/{report['n_trials']} trials finished", "",
             "| config | split | weak | ceiling | student | ceiling − weak ± SE | PGR |",
             "|---|---|---|---|---|---|---|"]
    for label, row in report["rows"].items():
        for split in ("val", "test"):
            e = row[split]
            lines.append(f"| {label} | {split} | {e['weak_acc']:.3f} | {e['ceiling_acc']:.3f} | "
                         f"{e['student_acc']:.3f} | {_gap_cell(e)} | {_pgr_cell(e)} |")
    lines += ["", *budget_lines(report.get("references") or {})]
    lines.append("")
    lines.append("best config: " + json.dumps(report["rows"]["best"]["config"], default=str, sort_keys=True))
    if report["select_on"] == "weak":
        lines.append("note: selected on agreement with weak labels (no GT); this favours imitation of the weak model.")
    lines += [ROW_NOTES[label] for label in report["rows"] if label in ROW_NOTES]
    if "confirm" in report:
        lines += ["", report["confirm"]["table"]]
    elif not report.get("confirm_planned"):
        lines += ["", "no confirmation seeds: rerun with --confirm-seeds K for test PGR over seeds and the paired "
                      "best-vs-baseline comparison"]
    return "\n".join(lines)


def budget_lines(references: dict[str, Any]) -> list[str]:
    """Each role's tuning budget, then each bootstrap link's accuracy (a link below the weak model flagged)."""
    budgets = references.get("budgets") or {}
    lines = []
    if budgets:
        lines.append("tuning budgets (configurations, each selected on GT validation except the student's trials): "
                     + " · ".join(f"{role} {n}" for role, n in budgets.items()))
    links = references.get("bootstrap") or []
    if not links:
        return lines
    weak = references.get("weak", {})
    weak_val, weak_test = weak.get("val_acc"), weak.get("test_acc")
    lines += ["", "| link | model | chosen | folds | budget | val acc | test acc | labels on B acc |",
              "|---|---|---|---|---|---|---|---|"]
    flags = []
    for e in links:
        cell = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "—"  # noqa: E731
        lines.append(f"| {e['link']} | {e['model']} | {json.dumps(e.get('chosen', {}), sort_keys=True)} | "
                     f"{e.get('folds', '—')} | {e.get('budget', '—')} | {cell(e.get('val_acc'))} | "
                     f"{cell(e.get('test_acc'))} | {cell(e.get('labels_acc'))} |")
        below = [f"{split} {e[f'{split}_acc']:.3f} < weak {ref:.3f}"
                 for split, ref in (("val", weak_val), ("test", weak_test))
                 if ref is not None and e.get(f"{split}_acc") is not None and e[f"{split}_acc"] < ref]
        if below:
            flags.append(f"warning: bootstrap link {e['link']} ({e['model']}) is below the weak model: "
                         + "; ".join(below))
    return lines + flags


def confirm_seeds(plan: SearchPlan, ctx: SearchContext, report: dict[str, Any], executor: Executor) -> dict[str, Any]:
    """Retrain weak, ceiling, baselines and best on K further seeds; test PGR mean ± std and paired stats.

    The seeds are ``seed + 1 … seed + K``. Each reshuffles the search's pool of texts among A, B,
    val and test (``--fresh-pool``: draws a new pool), so cached activations are reused; the
    references are reselected on each seed's validation split with the same grids. ``executor``
    runs each training (cached stages are reused).
    """
    from w2s_ray.activations import SplitActivations
    from w2s_ray.analysis.paired import paired_comparison, verdict
    from w2s_ray.pipeline.data import prepare_data
    from w2s_ray.pipeline.stages import Pipeline
    from w2s_ray.search.driver import search_chain
    from w2s_ray.search.trainable import student_config

    per_label: dict[str, list[dict]] = {label: [] for label in report["rows"] if confirmed(label)}
    fresh = bool(plan.settings.fresh_pool)
    for seed in range(plan.settings.seed + 1, plan.settings.seed + 1 + plan.confirm_seeds):
        data = prepare_data(replace(plan.data_cfg, seed=seed, pool_seed=None if fresh else plan.data_cfg.seed))
        acts = SplitActivations(data, plan.cache_uri, plan.reference_base.max_length, plan.reference_base.pooling)
        pipe = Pipeline(data, StageCache(plan.cache_uri), executor, val_labels=plan.settings.val_labels,
                        activations=acts)
        ref = plan.reference_base.replace(seed=seed)
        weak, _, _ = pipe.select("weak", plan.weak, ref, plan.references["weak"])
        ceiling, _, _ = pipe.select("ceiling", plan.strong, ref, plan.references["ceiling"])
        seed_plan = replace(plan, reference_base=ref)
        for label in per_label:
            row = report["rows"][label]
            setup = student_config(row["config"], replace(ctx, student_base=ctx.student_base.replace(seed=seed)))
            links = search_chain(replace(seed_plan, max_bootstrap=setup.steps), pipe, weak, ceiling, setup.folds).links
            source = links[-1] if links else weak
            student = pipe.student(plan.strong, setup.cfg, source, setup.weak_labels, weak=weak, folds=setup.folds)
            per_label[label].append(compare(data, weak, student, ceiling, "test", None, plan.settings.min_gap,
                                            plan.settings.gap_z))
    out: dict[str, Any] = {"seeds": plan.confirm_seeds, "pool": "fresh" if fresh else "reshuffled",
                           "per_seed": per_label, "stats": {}, "paired": {}}
    lines = [f"confirmation on {plan.confirm_seeds} further seeds (test split; "
             f"{'a fresh pool of texts' if fresh else 'the same pool reshuffled'} per seed)", "",
             "| config | weak | ceiling | student | test PGR | undefined |", "|---|---|---|---|---|---|"]
    for label, runs in per_label.items():
        stats = {m: mean_std([r[m] for r in runs]) for m in ("weak_acc", "ceiling_acc", "student_acc")}
        stats["pgr"] = mean_std([r["pgr"] for r in runs if r["pgr"] is not None])
        undefined = sum(r["pgr"] is None for r in runs)
        out["stats"][label] = {**stats, "pgr_undefined": undefined}
        cell = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}" if s["n"] else "—"  # noqa: E731
        lines.append(f"| {label} | {cell(stats['weak_acc'])} | {cell(stats['ceiling_acc'])} | "
                     f"{cell(stats['student_acc'])} | {cell(stats['pgr'])} | {undefined}/{len(runs)} |")
    lines.append("")
    for label in (x for x in per_label if x.startswith("baseline")):
        best, base = per_label["best"], per_label[label]
        paired = paired_comparison([r["pgr"] for r in best], [r["pgr"] for r in base], "test PGR")
        if paired["n"] < 3:  # PGR undefined on most seeds (gap within noise): compare accuracy instead
            paired = paired_comparison([r["student_acc"] for r in best], [r["student_acc"] for r in base],
                                       "test accuracy")
        paired["line"] = verdict(paired, "best", label)
        out["paired"][label] = paired
        lines.append(paired["line"])
    out["table"] = "\n".join(lines)
    print(out["table"])
    return out


def prune_weights(plan: SearchPlan, report: dict[str, Any], grid: ResultGrid) -> PruneReport:
    """Keep the weights of the baselines and the ``--keep-top-k`` best students; delete the other
    students' weights and any Ray Train checkpoint left by a training that never published."""
    from w2s_ray.search.prune import drop_leftover_checkpoints, prune_students

    pruned = prune_students(plan.cache_uri, _trial_frame(grid), report["rows"], plan.settings.keep_top_k,
                            search_id=report["search_id"])
    pruned.freed_bytes += drop_leftover_checkpoints(plan.train_storage)
    return pruned


def write_outputs(plan: SearchPlan, report: dict[str, Any], grid: ResultGrid) -> Path:
    """summary.md, best_config.yaml, trials.parquet, search.json and plots/ under <storage>/<name>/w2s/."""
    from w2s_ray.search.storage import publish_dir

    local = Path(tempfile.mkdtemp(prefix="w2s-out-"))
    files = {
        "summary.md": local / "summary.md",
        "best_config.yaml": local / "best_config.yaml",
        "trials.parquet": local / "trials.parquet",
        "search.json": local / "search.json",
    }
    report["table"] = format_summary(report)
    files["summary.md"].write_text(report["table"] + "\n")
    files["best_config.yaml"].write_text(yaml.safe_dump(json.loads(json.dumps(report["best_config"], default=str)),
                                                        sort_keys=False))
    trials = _trial_frame(grid)
    trials.to_parquet(files["trials.parquet"], index=False)
    files["search.json"].write_text(json.dumps({k: v for k, v in report.items() if k != "table"},
                                               indent=2, default=str, sort_keys=True))
    try:  # the search draws its own pictures; a plotting fault must not lose the results
        from w2s_ray.analysis.plots import write_plots

        write_plots(json.loads(files["search.json"].read_text()), trials, local / "plots")
    except Exception as exc:  # noqa: BLE001
        print(f"warning: plots not written: {type(exc).__name__}: {exc}")
    target = f"{plan.exp_path}/w2s"
    publish_dir(local, target)
    print(f"outputs: {target}")
    return local
