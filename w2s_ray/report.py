"""``python -m w2s_ray.report``: plots of a finished search, written as PNG and logged to MLflow.

    python -m w2s_ray.report w2s_runs/sst2-quick-s0            # a search's storage path
    python -m w2s_ray.report w2s_runs/sst2-quick-s0 --tracking-uri http://mlflow:5000

Plots (in ``<search>/w2s/plots/``, and as artifacts ``plots/`` of the search's parent run):
  * ``accuracy_vs_size.png``: test accuracy against model size for the weak model, the bootstrap
    links, the baseline and best students and the ceiling (the paper's figure 3 style);
  * ``pgr_per_method.png``: PGR per loss family, mean ± std (over further seeds for the confirmed
    configs, over trials on validation otherwise);
  * ``best_so_far.png``: best objective so far against trial number.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from w2s_ray.errors import UserError, cli_entry


def load_search(path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The search's ``search.json`` and ``trials.parquet`` (UserError if it is not a finished search)."""
    out = path / "w2s"
    if not (out / "search.json").exists() or not (out / "trials.parquet").exists():
        raise UserError(f"{path} is not a finished search (no w2s/search.json and w2s/trials.parquet)")
    return json.loads((out / "search.json").read_text()), pd.read_parquet(out / "trials.parquet")


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


def make_plots(search_dir: Path) -> list[Path]:
    """Plots of a finished search into ``<search>/w2s/plots/``."""
    search, trials = load_search(search_dir)
    return write_plots(search, trials, search_dir / "w2s" / "plots")


def write_plots(search: dict[str, Any], trials: pd.DataFrame, dest: Path) -> list[Path]:
    """The three plots of a search summary and its trials, as PNG files in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    return [
        plot_accuracy_vs_size(search, dest / "accuracy_vs_size.png"),
        plot_pgr_per_method(search, trials, dest / "pgr_per_method.png"),
        plot_best_so_far(trials, dest / "best_so_far.png"),
    ]


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


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from w2s_ray.tracking import resolve_tracking_uri

    p = argparse.ArgumentParser(prog="python -m w2s_ray.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("search", help="a search's storage path: <storage>/<name>")
    p.add_argument("--tracking-uri", default=None, help="MLflow (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: w2s-<task>)")
    p.add_argument("--no-mlflow", action="store_true", help="only write the PNG files")
    args = p.parse_args(argv)
    search_dir = Path(args.search)
    paths = make_plots(search_dir)
    for path in paths:
        print(f"wrote {path}")
    if not args.no_mlflow:
        search, _ = load_search(search_dir)
        uri = resolve_tracking_uri(args.tracking_uri, Path.cwd())
        run = log_plots(paths, uri, args.experiment or f"w2s-{search['task']}", search["name"])
        print(f"logged to MLflow run {run}" if run else "no MLflow parent run found for this search; plots not logged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
