"""``--confirm-seeds K``: best config and baseline retrained on K fresh seeds, test PGR mean ± std.

Runs the search's own shared-stage and confirmation code in-process (tiny random models, real
sst2 rows); Ray Train only changes where each training runs, which the Ray tests cover.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.search_plan import tiny_plan
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.search.driver import compute_shared, search_context
from w2s_ray.search.outputs import confirm_seeds
from w2s_ray.train.executor import LocalExecutor, ScalingSpec

ROWS = {
    "baseline": {"config": {"loss": "xent", "lr": 5e-4, "epochs": 1}},
    "best": {"config": {"loss": "logconf", "lr": 1e-3, "epochs": 1, "aux_coef": 0.5}},
    # the other selection mode's pick is reported, never retrained
    "best_by_weak": {"config": {"loss": "logconf", "lr": 2e-4, "epochs": 1, "aux_coef": 0.3}},
}


@pytest.fixture
def plan(tmp_path, data_dir, model_cache):
    return tiny_plan(tmp_path, data_dir, "--confirm-seeds", "2")


def test_confirmation_seeds_reshuffle_the_same_pool(plan):
    """Each further seed reshuffles the search's texts among the splits (so activations are reused)."""
    from dataclasses import replace

    from w2s_ray.pipeline.data import prepare_data

    def rows(data):
        return {name: set(split.ids) for name, split in data.splits.items()}

    first = rows(plan.data)
    again = rows(prepare_data(replace(plan.data_cfg, seed=1, pool_seed=plan.data_cfg.seed)))
    fresh = rows(prepare_data(replace(plan.data_cfg, seed=1)))
    assert set().union(*again.values()) == set().union(*first.values())  # the same pool
    assert again != first  # ... dealt out differently
    assert set().union(*fresh.values()) != set().union(*first.values())  # --fresh-pool: new texts


def test_confirm_seeds_retrains_best_and_baseline_on_fresh_seeds(plan):
    executor = LocalExecutor()
    cache = StageCache(plan.cache_uri)
    shared = compute_shared(plan, executor)
    ctx = search_context(plan, shared, ScalingSpec())
    before = cache.trainings()
    assert sorted(t["stage"] for t in before) == ["ceiling", "weak"]

    out = confirm_seeds(plan, ctx, {"rows": ROWS}, executor)

    new = cache.trainings()[len(before):]
    # per further seed: its own weak and ceiling (fresh splits), then one student per config
    assert sorted(t["stage"] for t in new) == sorted(["weak", "ceiling", "student", "student"] * 2)
    weak_keys = {t["key"] for t in cache.trainings() if t["stage"] == "weak"}
    assert len(weak_keys) == 3  # seeds 0, 1, 2 never share a weak model
    assert out["seeds"] == 2 and set(out["per_seed"]) == {"baseline", "best"}
    for label, runs in out["per_seed"].items():
        assert len(runs) == 2 and all(r["split"] == "test" for r in runs)
        stats = out["stats"][label]
        students = [r["student_acc"] for r in runs]
        assert stats["student_acc"]["mean"] == pytest.approx(np.mean(students))
        assert stats["student_acc"]["std"] == pytest.approx(np.std(students, ddof=1))
        defined = [r["pgr"] for r in runs if r["pgr"] is not None]
        assert stats["pgr_undefined"] == 2 - len(defined)
        assert stats["pgr"]["n"] == len(defined)
        assert f"| {label} |" in out["table"]
    assert "confirmation on 2 further seeds (test split; the same pool reshuffled per seed)" in out["table"]
    paired = out["paired"]["baseline"]
    assert paired["n"] == 2 and paired["line"] in out["table"]
    assert "beyond noise" in paired["line"]  # one line: beats the baseline beyond noise or not

    again = confirm_seeds(plan, ctx, {"rows": ROWS}, executor)
    assert cache.trainings()[len(before) + len(new):] == []  # everything reused from the cache
    # (compared as JSON: an all-undefined PGR has a NaN mean, and NaN != NaN)
    assert json.dumps(again["stats"], sort_keys=True) == json.dumps(out["stats"], sort_keys=True)
