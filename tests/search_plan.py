"""A validated tiny search plan for in-process tests of the search's own code (no Ray)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.ray_cluster import tiny_space
from w2s_ray.search.cli import parse_settings
from w2s_ray.search.driver import SearchPlan, plan_search


def tiny_plan(tmp_path: Path, data_dir: str, *extra: str) -> SearchPlan:
    """``plan_search`` for sst2 on the tiny preset and the tests' tiny space, storage under tmp_path."""
    space = tmp_path / "space.yaml"
    space.write_text(tiny_space(epochs=1))
    args = parse_settings([
        "--task", "sst2", "--preset", "tiny", "--space", str(space), "--data-dir", data_dir,
        "--storage", str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
        "--seed", "0", *extra,
    ])
    return plan_search(args)


def copy_shared_stages(template: Path, storage: Path) -> None:
    """Seed a search's cache (``<storage>/cache``) with the tiny search's weak model and ceiling
    (the ``tiny_shared_stages`` fixture), ledger included."""
    shutil.copytree(template, storage / "cache")
