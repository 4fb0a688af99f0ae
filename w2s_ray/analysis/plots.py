"""Plots of a finished search (PNG), and the loader that checks a search's ``search.json`` and
``trials.parquet`` hold what they read. The CLI is :mod:`w2s_ray.report`."""


from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from w2s_ray.errors import UserError


def load_search(path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The search's ``search.json`` and ``trials.parquet``, checked to hold what the plots read.

    UserError (one line naming the file and what is wrong) if it is not a complete finished search.
    """
    out = path / "w2s"
    if not (out / "search.json").is_file() or not (out / "trials.parquet").is_file():
        raise UserError(f"{path} is not a finished search (no w2s/search.json and w2s/trials.parquet); "
                        "pass a search's storage path <storage>/<name>")
    fix = "rerun or resume the search to rewrite it"
    try:
        search = json.loads((out / "search.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{out / 'search.json'} is not valid JSON ({_first_line(exc)}); {fix}") from None
    _check_search(search, out / "search.json", fix)
    try:
        trials = pd.read_parquet(out / "trials.parquet")
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise UserError(f"{out / 'trials.parquet'} is not a readable parquet file ({_first_line(exc)}); "
                        f"{fix}") from None
    needed = ["trial_id", "objective"] + ([] if search.get("confirm", {}).get("stats") else ["val_pgr"])
    missing = [c for c in needed if c not in trials.columns]
    if missing:
        raise UserError(f"{out / 'trials.parquet'} has no column {missing[0]!r}; {fix}")
    if trials.empty:
        raise UserError(f"{out / 'trials.parquet'} holds no trials; {fix}")
    return search, trials


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_NUMBER = (int, float)


def _check_search(search: Any, file: Path, fix: str) -> None:
    """Every key the plots read exists with the right type (UserError naming the first that does not)."""
    def need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        value = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            got = "missing" if not isinstance(obj, dict) or key not in obj else f"a {type(value).__name__}"
            raise UserError(f"{file}: {where}{key} is {got}, not the expected "
                            f"{getattr(kind, '__name__', 'number')}; {fix}")
        return value

    if not isinstance(search, dict):
        raise UserError(f"{file} holds a {type(search).__name__}, not a search summary object; {fix}")
    need(search, "name", str, "")
    need(search, "task", str, "")
    refs = need(search, "references", dict, "")
    for ref in ("weak", "ceiling"):
        need(need(refs, ref, dict, "references."), "model", str, f"references.{ref}.")
    links = refs.get("bootstrap", [])
    if not isinstance(links, list):
        raise UserError(f"{file}: references.bootstrap is a {type(links).__name__}, not a list; {fix}")
    for i, link in enumerate(links):
        need(link, "model", str, f"references.bootstrap[{i}].")
    rows = need(search, "rows", dict, "")
    if not rows:
        raise UserError(f"{file}: rows is empty (no finished student to plot); {fix}")
    for label in rows:
        test = need(rows, label, dict, "rows.")
        test = need(test, "test", dict, f"rows.{label}.")
        for metric in ("weak_acc", "ceiling_acc", "student_acc"):
            need(test, metric, _NUMBER, f"rows.{label}.test.")
    stats = search.get("confirm", {}).get("stats") if isinstance(search.get("confirm"), dict) else None
    if stats:
        need(search["confirm"], "seeds", int, "confirm.")
        for name, entry in stats.items():
            pgr = need(entry if isinstance(entry, dict) else {}, "pgr", dict, f"confirm.stats.{name}.")
            for key in ("mean", "std"):
                need(pgr, key, _NUMBER, f"confirm.stats.{name}.pgr.")


def _sizes(search: dict[str, Any]) -> dict[str, int]:
    from w2s_ray.models import model_size

    refs = search["references"]
    models = {"weak": refs["weak"]["model"], "ceiling": refs["ceiling"]["model"]}
    for i, link in enumerate(refs.get("bootstrap", []), start=1):
        models[f"bootstrap_{i}"] = link["model"]
    return {name: model_size(spec) for name, spec in models.items()}


_STUDENT_COLORS = {"best": "tab:green", "baseline": "tab:orange"}


def plot_accuracy_vs_size(search: dict[str, Any], dest: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = _sizes(search)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, row in search["rows"].items():
        test = row["test"]
        ax.scatter([sizes["weak"]], [test["weak_acc"]], color="tab:blue", marker="o")
        ax.scatter([sizes["ceiling"]], [test["ceiling_acc"]], color="black", marker="s")
        ax.scatter([sizes["ceiling"]], [test["student_acc"]], marker="^",
                   color=_STUDENT_COLORS.get(label, "tab:purple"), label=f"student ({label})")
    links = search["references"].get("bootstrap", [])
    for i, link in enumerate(links, start=1):
        if link.get("test_acc") is not None:
            ax.scatter([sizes[f"bootstrap_{i}"]], [link["test_acc"]], color="tab:red", marker="D",
                       label="bootstrap link (weak labels)" if i == 1 else None)
    ax.scatter([], [], color="tab:blue", marker="o", label="weak (GT)")
    ax.scatter([], [], color="black", marker="s", label="ceiling (GT)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (strong model size)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{search['task']}: weak → strong")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    plt.close(fig)
    return dest


def plot_pgr_per_method(search: dict[str, Any], trials: pd.DataFrame, dest: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    confirm = search.get("confirm", {}).get("stats")
    if confirm:
        names = list(confirm)
        means = [confirm[n]["pgr"]["mean"] for n in names]
        stds = [confirm[n]["pgr"]["std"] for n in names]
        ax.set_ylabel(f"test PGR (mean ± std over {search['confirm']['seeds']} seeds)")
    else:
        column = "config/loss" if "config/loss" in trials else None
        metric = "val_pgr" if trials["val_pgr"].notna().any() else "objective"
        groups = trials.groupby(trials[column] if column else pd.Series("all", index=trials.index))[metric]
        names = list(groups.groups)
        means = groups.mean().tolist()
        stds = groups.std().fillna(0).tolist()
        ax.set_ylabel(f"validation {'PGR' if metric == 'val_pgr' else 'objective'} (mean ± std over trials)")
    ax.bar(names, means, yerr=stds, capsize=4, color="tab:purple")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_title(f"{search['task']}: PGR per method")
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    plt.close(fig)
    return dest


def plot_best_so_far(trials: pd.DataFrame, dest: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = trials.sort_values("trial_id") if "date" not in trials else trials.sort_values("date")
    values = order["objective"].astype(float).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(values) + 1), values, "o", alpha=0.5, label="trial")
    ax.plot(range(1, len(values) + 1), values.cummax(), "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (validation)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    plt.close(fig)
    return dest


def layer_candidates(search: dict[str, Any]) -> dict[str, dict[int, float]]:
    """Best GT validation accuracy per probe layer of each reference's candidates (probe searches)."""
    out: dict[str, dict[int, float]] = {}
    for role in ("weak", "ceiling"):
        for cand in search.get("references", {}).get(role, {}).get("candidates", []):
            if isinstance(cand, dict) and cand.get("layer") is not None and cand.get("val_acc") is not None:
                best = out.setdefault(role, {})
                layer = int(cand["layer"])
                best[layer] = max(best.get(layer, 0.0), float(cand["val_acc"]))
    return out


def plot_accuracy_by_layer(search: dict[str, Any], dest: Path) -> Path:
    """Every layer of both models: best GT validation accuracy of a probe on it (over L2 strengths)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for role, color in (("weak", "tab:blue"), ("ceiling", "black")):
        layers = layer_candidates(search).get(role, {})
        if layers:
            model = search["references"][role]["model"].rsplit("/", 1)[-1]
            xs = sorted(layers)
            ax.plot(xs, [layers[x] for x in xs], "o-", color=color, label=f"{role}: {model}")
    ax.set_xlabel("hidden state (0 = embeddings)")
    ax.set_ylabel("validation accuracy (GT), best L2")
    ax.set_title(f"{search['task']}: probes on every layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dest, dpi=120)
    plt.close(fig)
    return dest


def make_plots(search_dir: Path, plots_dir: Path | None = None,
               loaded: tuple[dict[str, Any], pd.DataFrame] | None = None) -> list[Path]:
    """Render the plots (three, and accuracy by layer for probe searches), then move them into ``plots_dir``
    (default ``<search>/w2s/plots``) together.

    Nothing lands in ``plots_dir`` unless every plot rendered.
    """
    search, trials = loaded or load_search(search_dir)
    plots = plots_dir or search_dir / "w2s" / "plots"
    with tempfile.TemporaryDirectory(prefix="w2s-plots-") as tmp:
        staged = [
            plot_accuracy_vs_size(search, Path(tmp) / "accuracy_vs_size.png"),
            plot_pgr_per_method(search, trials, Path(tmp) / "pgr_per_method.png"),
            plot_best_so_far(trials, Path(tmp) / "best_so_far.png"),
        ]
        if layer_candidates(search):
            staged.append(plot_accuracy_by_layer(search, Path(tmp) / "accuracy_by_layer.png"))
        plots.mkdir(parents=True, exist_ok=True)
        final = []
        for path in staged:
            part = plots / f".{path.name}.part"
            shutil.copyfile(path, part)
            os.replace(part, plots / path.name)
            final.append(plots / path.name)
    return final


def write_plots(search: dict[str, Any], trials: pd.DataFrame, dest: Path) -> list[Path]:
    """The three plots of a search summary and its trials, as PNG files in ``dest`` (all or none)."""
    return make_plots(dest, dest, loaded=(search, trials))


def log_plots(paths: list[Path], tracking_uri: str, experiment: str, search_name: str) -> str | None:
    """Attach the plots to the search's parent run; returns its id (None if not found)."""
    import mlflow

    from w2s_ray.tracking import check_tracking_uri, find_search_run

    check_tracking_uri(tracking_uri)
    run_id = find_search_run(tracking_uri, experiment, search_name)
    if run_id is None:
        return None
    client = mlflow.MlflowClient(tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path), "plots")
    return run_id
