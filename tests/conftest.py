"""Shared fixtures: where the real data lives, cheap run settings, and Ray/MLflow helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("W2S_DATA_DIR", REPO.parent / "shared" / "data")).resolve()

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.mlflow_fixtures import *  # noqa: F403, E402  (MLflow servers: sqlite and PostgreSQL)


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not SHARED_DATA.exists():
        pytest.fail(f"real data not found at {SHARED_DATA}: tests read ../shared/data beside the checkout")
    return str(SHARED_DATA)


@pytest.fixture
def model_cache(tmp_path_factory, monkeypatch) -> Path:
    """Keep generated tiny models out of the user's home cache."""
    path = tmp_path_factory.getbasetemp() / "model-cache"
    monkeypatch.setenv("W2S_MODEL_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_shared_stages(tmp_path_factory, data_dir) -> Path:
    """A stage cache holding the tiny sst2 search's weak model and ceiling, trained once in-process.

    Ray tests about students (faults, ASHA) start from a copy (``tests.search_plan.copy_shared_stages``), so their
    clusters train only the students they are about; the job-submit counting test still trains
    its references under Ray Train.
    """
    from tests.search_plan import tiny_plan
    from w2s_ray.search.driver import compute_shared
    from w2s_ray.train.executor import LocalExecutor

    root = tmp_path_factory.mktemp("tiny-shared-stages")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("W2S_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "model-cache"))
        plan = tiny_plan(root, data_dir)
        compute_shared(plan, LocalExecutor())
    return Path(plan.cache_uri)

