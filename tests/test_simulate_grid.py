"""The grid simulator's accounting on toy grids, checked by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "simulate_grid.py"
_spec = importlib.util.spec_from_file_location("simulate_grid", _PATH)
sim = importlib.util.module_from_spec(_spec)
sys.modules["simulate_grid"] = sim  # dataclasses look their module up
_spec.loader.exec_module(sim)


def _toy(**kw) -> sim.Spec:
    """Every training costs exactly its 10 s start-up (no compute, nothing to load or write)."""
    base = dict(tasks=1, pairs=[("a", "b")], trials=2, max_concurrent=1, lrs=1, max_bootstrap=0,
                ladder=["a", "b", "c"], params={"a": 1, "b": 1, "c": 1}, total_params={"a": 0, "b": 0, "c": 0},
                c_gpu=0.0, startup_s=10.0, asha=False, max_gpus=1, gpus_per_node=1, node_start_s=5.0, idle_s=10.0)
    base.update(kw)
    return sim.Spec(**base)


def test_one_gpu_serial_toy_grid():
    out = sim.simulate(_toy())
    # node asked for at 0, ready at 5; weak, ceiling, then two students back to back: busy 5..45; idle until 55
    assert out["trainings"] == 4
    assert out["busy_gpu_hours"] * 3600 == pytest.approx(40)
    assert out["gpu_hours"] * 3600 == pytest.approx(55)
    assert out["naive_gpu_hours"] * 3600 == pytest.approx(60)  # 2 trials x (weak + ceiling + student)
    assert out["ratio"] == pytest.approx(55 / 60)
    assert out["first_table_h"] * 3600 == pytest.approx(35) and out["final_table_h"] * 3600 == pytest.approx(45)
    assert out["utilisation"] == pytest.approx(40 / 55)


def test_shared_stages_are_trained_once_across_searches_unless_dedup_is_off():
    pairs = [("a", "b"), ("a", "c")]
    shared = sim.simulate(_toy(pairs=pairs, max_gpus=4, gpus_per_node=4))
    assert shared["shared_trained"] == {"weak": 1, "ceiling": 2}
    racing = sim.simulate(_toy(pairs=pairs, max_gpus=4, gpus_per_node=4, cross_search_dedup=False))
    assert racing["shared_trained"] == {"weak": 2, "ceiling": 2}
    assert racing["busy_gpu_hours"] > shared["busy_gpu_hours"]


def test_links_and_asha():
    spec = _toy(pairs=[("a", "c")], max_bootstrap=1, trials=8, asha=True, asha_rf=4, max_gpus=8, gpus_per_node=8)
    assert sim.links_of(spec, "a", "c") == ["b"]
    out = sim.simulate(spec)
    assert out["shared_trained"] == {"weak": 1, "ceiling": 1, "link": 1}
    assert out["trainings"] == 3 + 8  # trials 5, 6, 7 are stopped after one epoch, still one training each
    # naive: every trial trains weak + ceiling + student, and half of them (depth 1) the link too
    assert out["naive_gpu_hours"] * 3600 == pytest.approx(8 * 30 + 4 * 10)
    stopped = sim.stage_seconds(_toy(c_gpu=1e-3, tokens=1, n_train=10, n_val=0, n_test=0, n_predict_b=0),
                                "student_stopped", "b")
    full = sim.stage_seconds(_toy(c_gpu=1e-3, tokens=1, n_train=10, n_val=0, n_test=0, n_predict_b=0), "student", "b")
    assert stopped == pytest.approx(10 + 0.01) and full == pytest.approx(10 + 0.02)
