"""Plots of a finished search (PNG): accuracy by model size, PGR per method, best objective so
far and, for probe searches, accuracy by layer. The CLI is :mod:`w2s_ray.report`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from w2s_ray.analysis.search_file import load_search, model_sizes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["layer_candidates", "load_search", "log_plots", "make_plots", "plot_accuracy_by_layer",
           "plot_accuracy_vs_size", "plot_best_so_far", "plot_pgr_per_method", "write_plots"]


@contextmanager
def _figure(dest: Path) -> Iterator[Axes]:
    """The axes of a new 6x4 in figure, laid out and saved to ``dest`` (120 dpi) when the block ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        yield ax
        fig.tight_layout()
        fig.savefig(dest, dpi=120)
    finally:
        plt.close(fig)


_STUDENT_COLORS = {"best": "tab:green", "baseline": "tab:orange"}


def plot_accuracy_vs_size(search: dict[str, Any], dest: Path) -> Path:
    """Test accuracy of weak, ceiling, bootstrap links and each student row against model size."""
    sizes = model_sizes(search)
    with _figure(dest) as ax:
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
    return dest


def plot_pgr_per_method(search: dict[str, Any], trials: pd.DataFrame, dest: Path) -> Path:
    """PGR per method: the confirmed test PGR over seeds, else the trials' validation PGR per loss."""
    with _figure(dest) as ax:
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
    return dest


def plot_best_so_far(trials: pd.DataFrame, dest: Path) -> Path:
    """Each trial's objective in the order they ran, and the best so far."""
    order = trials.sort_values("trial_id") if "date" not in trials else trials.sort_values("date")
    values = order["objective"].astype(float).reset_index(drop=True)
    with _figure(dest) as ax:
        ax.plot(range(1, len(values) + 1), values, "o", alpha=0.5, label="trial")
        ax.plot(range(1, len(values) + 1), values.cummax(), "-", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel("objective (validation)")
        ax.legend()
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
    with _figure(dest) as ax:
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
    """The plots of a search summary and its trials (see ``make_plots``), as PNG files in ``dest`` (all or none)."""
    return make_plots(dest, dest, loaded=(search, trials))


def log_plots(paths: list[Path], tracking_uri: str, experiment: str, search_name: str,
              search_id: str | None = None) -> str | None:
    """Attach the plots to the search's parent run (that search's, when ``search_id`` is known);
    returns its id (None if not found)."""
    import mlflow

    from w2s_ray.tracking import check_tracking_uri, find_search_run

    check_tracking_uri(tracking_uri)
    run_id = find_search_run(tracking_uri, experiment, search_name, search_id)
    if run_id is None:
        return None
    client = mlflow.MlflowClient(tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path), "plots")
    return run_id
