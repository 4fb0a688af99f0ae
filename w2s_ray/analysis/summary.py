"""Tables of weak / student / ceiling results across seeds (plain text that is also markdown)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

METRICS = ("weak_acc", "student_acc", "ceiling_acc", "student_weak_agreement", "misfit_kl")


def mean_std(values: list[float]) -> dict[str, float | int]:
    """Mean and sample std (ddof=1; 0 for one value) of the finite values, and how many there were."""
    arr = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if len(arr) == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds per split; PGR over the seeds where it is defined, with reasons."""
    out: dict[str, Any] = {}
    splits = ["val", "test"] + [f"ood:{k}" for k in (runs[0].get("ood") or {})] if runs else []
    for split in splits:
        rows = [r["ood"][split[4:]] if split.startswith("ood:") else r[split] for r in runs]
        entry: dict[str, Any] = {m: mean_std([row.get(m) for row in rows]) for m in METRICS if m in rows[0]}
        entry["pgr"] = mean_std([row["pgr"] for row in rows if row.get("pgr") is not None])
        entry["pgr_undefined"] = sum(1 for row in rows if row.get("pgr") is None)
        entry["pgr_reasons"] = sorted({row["pgr_reason"] for row in rows if row.get("pgr_reason")})
        out[split] = entry
    return out


def fmt(stat: dict[str, float | int]) -> str:
    if not stat or stat.get("n", 0) == 0:
        return "—"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}" if stat["n"] > 1 else f"{stat['mean']:.3f}"


def fmt_pgr(entry: dict[str, Any], n_runs: int) -> str:
    undefined = entry.get("pgr_undefined", 0)
    if undefined == n_runs:
        return "undefined (" + "; ".join(entry.get("pgr_reasons", [])) + ")"
    text = fmt(entry["pgr"])
    return text + (f" ({undefined}/{n_runs} seeds undefined)" if undefined else "")


def format_runs(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """One markdown table: rows per split, columns weak/ceiling/student accuracy and PGR."""
    first = runs[0]
    head = (f"task `{first['task']}` · weak `{first['weak_model']}` → strong `{first['strong_model']}` · "
            f"loss `{first['loss']}` {first.get('loss_params') or ''} · seeds {[r['seed'] for r in runs]}")
    lines = [head, "", "| split | weak | ceiling | student | PGR | student–weak agreement | misfit KL |",
             "|---|---|---|---|---|---|---|"]
    for split, entry in summary.items():
        lines.append(
            f"| {split} | {fmt(entry.get('weak_acc', {}))} | {fmt(entry.get('ceiling_acc', {}))} | "
            f"{fmt(entry.get('student_acc', {}))} | {fmt_pgr(entry, len(runs))} | "
            f"{fmt(entry.get('student_weak_agreement', {}))} | {fmt(entry.get('misfit_kl', {}))} |"
        )
    return "\n".join(lines + link_lines(runs, summary))


def link_lines(runs: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The bootstrap links' accuracy over seeds, each flagged where its mean is below the weak model's."""
    count = len(runs[0].get("links") or []) if runs else 0
    if not count:
        return []
    lines = ["", "| link | model | chosen (per seed) | val acc | test acc | labels on B acc |",
             "|---|---|---|---|---|---|"]
    flags = []
    for i in range(count):
        per_seed = [r["links"][i] for r in runs]
        stats = {split: mean_std([e.get(f"{split}_acc") for e in per_seed]) for split in ("val", "test", "labels")}
        chosen = "; ".join(json.dumps(e.get("chosen", {}), sort_keys=True) for e in per_seed)
        lines.append(f"| {per_seed[0]['link']} | {per_seed[0]['model']} | {chosen} | {fmt(stats['val'])} | "
                     f"{fmt(stats['test'])} | {fmt(stats['labels'])} |")
        below = [f"{split} {stats[split]['mean']:.3f} < weak {summary[split]['weak_acc']['mean']:.3f}"
                 for split in ("val", "test")
                 if stats[split]["n"] and summary.get(split, {}).get("weak_acc", {}).get("n")
                 and stats[split]["mean"] < summary[split]["weak_acc"]["mean"]]
        if below:
            flags.append(f"warning: bootstrap link {per_seed[0]['link']} ({per_seed[0]['model']}) is below the weak "
                         "model: " + "; ".join(below))
    return lines + (["", *flags] if flags else [])


LEGACY_DIR = "legacy"  # docs/results/legacy/: results computed under recipes since replaced
LEGACY_HEADING = ("## Sections that predate the current recipes\n\n"
                  "Kept for the record; computed before balanced, group-disjoint splits, half-credit ties and "
                  "the agreement-first no-GT criterion (see the header above). Do not compare them with the "
                  "sections before this heading.\n")


def collate(json_files: list[str]) -> str:
    """One markdown document from ``python -m w2s_ray.run --out`` JSON files and search summary.md files."""
    import json
    from pathlib import Path

    parts = []
    legacy_started = False
    for path in sorted(json_files, key=lambda p: (LEGACY_DIR in Path(p).parts, p)):
        legacy = LEGACY_DIR in Path(path).parts
        if legacy and not legacy_started:
            parts.append(LEGACY_HEADING)
            legacy_started = True
        title = f"### {Path(path).stem}" + (" (predates the current recipes)" if legacy else "")
        if path.endswith(".md"):  # a search's own summary.md, included as the tool wrote it
            parts.append(f"{title}\n\n" + Path(path).read_text())
            continue
        data = json.loads(Path(path).read_text())
        parts.append(f"{title}\n\n" + format_runs(data["runs"], data["summary"])
                     + f"\n\ncommand: `python -m w2s_ray.run {' '.join(data['argv'])}`\n")
    return "\n".join(parts)


def methods_table(json_files: list[str], baseline: str = "soft") -> str:
    """One table comparing weak-label methods run on the same task and seeds (``run --out`` JSONs).

    Per method: test PGR and student accuracy mean ± std over seeds, and the paired difference
    from ``baseline`` (the same seeds' soft-label student) with its SE and one-sided Wilcoxon p.
    """
    import json
    from pathlib import Path

    from w2s_ray.analysis.paired import paired_comparison

    by_method: dict[str, list[dict[str, Any]]] = {}
    for path in json_files:
        for run in json.loads(Path(path).read_text())["runs"]:
            by_method.setdefault(run["weak_labels"]["method"], []).append(run)
    if baseline not in by_method:
        raise ValueError(f"no {baseline!r} runs among {sorted(by_method)}")
    base = {r["seed"]: r for r in by_method[baseline]}
    first = by_method[baseline][0]
    lines = [f"task `{first['task']}` · weak `{first['weak_model']}` → strong `{first['strong_model']}` · "
             f"seeds {sorted(base)} · test split", "",
             f"| weak labels | student acc | test PGR | PGR undefined | paired Δ PGR vs {baseline} ± SE | "
             "Wilcoxon p (Δ > 0) | Wilcoxon p (Δ < 0) |", "|---|---|---|---|---|---|---|"]
    for method, runs in sorted(by_method.items(), key=lambda kv: (kv[0] != baseline, kv[0])):
        seeds = [r["seed"] for r in runs if r["seed"] in base]
        pgr = mean_std([r["test"]["pgr"] for r in runs if r["test"]["pgr"] is not None])
        undefined = sum(r["test"]["pgr"] is None for r in runs)
        acc = fmt(mean_std([r["test"]["student_acc"] for r in runs]))
        row = f"| {method} | {acc} | {fmt(pgr)} | {undefined}/{len(runs)} |"
        if method == baseline:
            lines.append(row + " — | — | — |")
            continue
        mine = {r["seed"]: r["test"]["pgr"] for r in runs}
        up = paired_comparison([mine[s] for s in seeds], [base[s]["test"]["pgr"] for s in seeds])
        down = paired_comparison([base[s]["test"]["pgr"] for s in seeds], [mine[s] for s in seeds])
        delta = f"{up['mean']:+.3f} ± {up['se']:.3f}" if up["se"] is not None else "—"
        p_up = f"{up['wilcoxon_p']:.3f}" if up["wilcoxon_p"] is not None else "—"
        p_down = f"{down['wilcoxon_p']:.3f}" if down["wilcoxon_p"] is not None else "—"
        lines.append(f"{row} {delta} | {p_up} | {p_down} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m w2s_ray.analysis.summary OUT.md RUN.json...``: collate run results into markdown.

    ``python -m w2s_ray.analysis.summary --methods OUT.md RUN.json...``: one weak-label methods table.
    """
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--methods"] and len(args) >= 3:
        Path(args[1]).write_text(methods_table(args[2:]))
        return 0
    if len(args) < 2:
        print("usage: python -m w2s_ray.analysis.summary OUT.md RUN.json [RUN.json ...]", file=sys.stderr)
        return 2
    out, files = Path(args[0]), args[1:]
    header = out.read_text().split("<!-- generated below -->")[0] if out.exists() else ""
    out.write_text(header + "<!-- generated below -->\n\n" + collate(files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
