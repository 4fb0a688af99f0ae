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
import sys
from pathlib import Path
from typing import Any

from w2s_ray.analysis.plots import log_plots, make_plots
from w2s_ray.analysis.search_file import load_search, model_sizes
from w2s_ray.errors import UserError, cli_entry


def report_tracking_uri(cli_value: str | None, search: dict[str, Any], workdir: Path) -> str | None:
    """Where to log: ``--tracking-uri``, ``$MLFLOW_TRACKING_URI``, the URI the search recorded, else
    ``./mlflow.db`` if it exists, else None. Never a store that does not exist yet (UserError if named)."""
    from w2s_ray.tracking.uri import (
        check_tracking_uri,
        default_tracking_uri,
        given_tracking_uri,
        redact,
        store_exists,
        with_driver,
    )

    recorded = search.get("tracking_uri")
    uri = given_tracking_uri(cli_value) or (with_driver(recorded) if isinstance(recorded, str) and recorded else None)
    if uri is None:
        default = default_tracking_uri(workdir)
        return default if store_exists(default) else None
    check_tracking_uri(uri)
    if not store_exists(uri):
        raise UserError(f"no MLflow tracking store at {redact(uri)} (the report never creates one); "
                        "pass the --tracking-uri the search used, or --no-mlflow")
    return uri


def plots_dir_for(search_dir: Path, given: str | None) -> Path:
    """``--plots-dir`` or ``<search>/w2s/plots``, checked writable before anything is rendered."""
    from w2s_ray.cli_common import unwritable_reason

    plots = Path(given).expanduser() if given else search_dir / "w2s" / "plots"
    reason = unwritable_reason(plots)
    if reason is None and plots.exists() and not plots.is_dir():
        reason = f"{plots} is a file"
    if reason:
        raise UserError(f"cannot write plots to {plots} ({reason}); pass --plots-dir DIR in a writable place")
    return plots


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from w2s_ray.cli_common import OneLineParser

    p = OneLineParser(prog="python -m w2s_ray.report", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("search", help="a search's storage path: <storage>/<name>")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow (default: $MLFLOW_TRACKING_URI, else the URI the search recorded, else ./mlflow.db "
                        "if it exists; no store is ever created)")
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: w2s-<task>)")
    p.add_argument("--no-mlflow", action="store_true", help="only write the PNG files")
    p.add_argument("--plots-dir", default=None, help="where to write the PNGs (default: <search>/w2s/plots)")
    args = p.parse_args(argv)
    search_dir = Path(args.search)
    loaded = load_search(search_dir)
    search = loaded[0]
    model_sizes(search)  # unknown models fail here, before any file is written
    plots = plots_dir_for(search_dir, args.plots_dir)
    uri = None if args.no_mlflow else report_tracking_uri(args.tracking_uri, search, Path.cwd())
    paths = make_plots(search_dir, plots, loaded)
    for path in paths:
        print(f"wrote {path}")
    if uri is None and not args.no_mlflow:
        print("no tracking URI given or recorded by the search (and no ./mlflow.db); plots not logged to MLflow")
    elif uri is not None:
        run = log_plots(paths, uri, args.experiment or f"w2s-{search['task']}", search["name"],
                        search.get("search_id"))
        print(f"logged to MLflow run {run}" if run else "no MLflow parent run found for this search; plots not logged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
