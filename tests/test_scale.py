"""One copy of each stage's weights, pruning to baseline + top-k, and concurrent shared stages (tiny, no Ray)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.stage_pointer import POINTER_FILE, read_pointer, weights_uri, write_pointer
from w2s_ray.search.concurrency import DedupExecutor, SharedPrefetch
from w2s_ray.search.prune import PRUNED_NOTE, kept_students, prune_students
from w2s_ray.train.executor import drop_checkpoints


def _student_entry(cache: StageCache, key: str) -> Path:
    def build(out: Path) -> None:
        (out / "predictions").mkdir()
        (out / "predictions" / "val.parquet").write_bytes(b"p")
        (out / "metrics.json").write_text("{}")
        (out / "checkpoint").mkdir()
        (out / "checkpoint" / "model.safetensors").write_bytes(b"w" * 1000)

    return cache.put("student", key, build)


def _frame(objectives: dict[str, float | None]) -> pd.DataFrame:
    rows = [{"trial_id": f"t{i}", "student_key": key, "objective": obj, "final": 1 if obj is not None else None}
            for i, (key, obj) in enumerate(objectives.items())]
    return pd.DataFrame(rows)


def test_ray_train_checkpoints_are_dropped_but_the_run_record_stays(tmp_path):
    run = tmp_path / "student-abc"
    for name in ("checkpoint_2024-01-01_00-00-00.000001", "checkpoint_2024-01-01_00-00-01.000001"):
        (run / name).mkdir(parents=True)
        (run / name / "train_state.pt").write_bytes(b"x" * 300)
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    assert drop_checkpoints(str(run)) == 600
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_manager_snapshot.json"]
    assert drop_checkpoints(str(tmp_path / "missing")) == 0


def test_pointer_names_the_cache_entry(tmp_path):
    cache = StageCache(tmp_path / "cache")
    entry = _student_entry(cache, "k1")
    ptr = write_pointer(tmp_path / "ptr", cache.uri, "student", "k1")
    assert [p.name for p in ptr.iterdir()] == [POINTER_FILE]
    ref = read_pointer(ptr)
    assert ref["key"] == "k1" and Path(ref["weights_uri"].removeprefix("file://")) == entry / "checkpoint"
    assert read_pointer(entry / "checkpoint") is None  # a real checkpoint is no pointer
    assert weights_uri("s3://b/c", "student", "k") == "s3://b/c/student/k/checkpoint"


def test_pruning_keeps_baseline_and_top_k_weights_and_every_prediction(tmp_path):
    cache = StageCache(tmp_path / "cache")
    objectives = {"base": 0.1, "k_a": 0.9, "k_b": 0.5, "k_c": 0.7, "k_d": 0.2, "k_e": None}
    for key in objectives:
        _student_entry(cache, key)
    frame = _frame(objectives)
    rows = {"baseline": {"trial_id": "t0"}, "best": {"trial_id": "t1"}, "best_by_weak": {"trial_id": "t4"}}
    kept = kept_students(frame, rows, keep_top_k=2)
    assert kept == {"base": ["baseline"], "k_a": ["best", "top1"], "k_c": ["top2"]}
    report = prune_students(cache.uri, frame, rows, keep_top_k=2, search_id="s1")
    assert sorted(report.pruned) == ["k_b", "k_d", "k_e"]
    assert report.freed_bytes == 3000
    for key in objectives:
        entry = cache.get("student", key)
        assert entry is not None and (entry / "predictions" / "val.parquet").exists()  # results stay
        assert (entry / "checkpoint").exists() == (key in kept)
        assert (entry / PRUNED_NOTE).exists() == (key not in kept)
    assert json.loads((cache.get("student", "k_b") / PRUNED_NOTE).read_text())["weights_uri"].endswith("/checkpoint")
    again = prune_students(cache.uri, frame, rows, keep_top_k=2, search_id="s1")  # idempotent
    assert again.pruned == [] and again.freed_bytes == 0


def test_a_search_never_prunes_weights_another_search_keeps(tmp_path):
    # two searches on one cache share students (a rerun of a seed reaches the same ones): the second
    # search's pruning must not delete the first one's best weights
    cache = StageCache(tmp_path / "cache")
    for key in ("base", "k_a", "k_b", "k_c"):
        _student_entry(cache, key)
    first = _frame({"base": 0.1, "k_a": 0.9})
    prune_students(cache.uri, first, {"baseline": {"trial_id": "t0"}, "best": {"trial_id": "t1"}}, 0, "first")
    second = _frame({"base": 0.1, "k_b": 0.95, "k_a": 0.9, "k_c": 0.2})
    report = prune_students(cache.uri, second, {"baseline": {"trial_id": "t0"}, "best": {"trial_id": "t1"}}, 0,
                            "second")
    assert report.kept_by_others == ["k_a"] and report.pruned == ["k_c"]
    assert (cache.get("student", "k_a") / "checkpoint" / "model.safetensors").exists()  # first's best stays
    assert not (cache.get("student", "k_c") / "checkpoint").exists()
    marks = sorted(p.name for p in (cache.get("student", "base") / "kept_by").iterdir())
    assert marks == ["first.json", "second.json"]  # one mark per search that keeps the baseline


class _Recording:
    """An executor that records its jobs and how many ran at once."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def run(self, job, name: str) -> None:
        with self._lock:
            self.names.append(name)
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.05)
        with self._lock:
            self.active -= 1


def test_dedup_executor_runs_one_stage_once_and_bounds_concurrency():
    inner = _Recording()
    dedup = DedupExecutor(inner, limit=2)
    jobs = [SimpleNamespace(cache_kind="weak", cache_key=f"k{i % 3}") for i in range(9)]
    threads = [threading.Thread(target=dedup.run, args=(job, job.cache_key)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inner.peak <= 2
    assert len(inner.names) <= 9 and set(inner.names) == {"k0", "k1", "k2"}


def test_prefetch_with_limit_one_changes_nothing():
    pipe = SimpleNamespace(executor=object())
    prefetch = SharedPrefetch(pipe, 1)
    prefetch.submit(lambda: pytest.fail("no background work at limit 1"))
    prefetch.close()
    assert pipe.executor is prefetch._original


def _shared_summary(shared) -> dict:
    return {"weak": shared.weak.key, "ceiling": shared.ceiling.key, "links": [link.key for link in shared.links],
            "selection": shared.selection, "weak_val_acc": shared.weak_val_acc,
            "ceiling_val_acc": shared.ceiling_val_acc}


def test_concurrent_shared_stages_match_the_serial_ones(tmp_path, data_dir, model_cache):
    from tests.search_plan import tiny_plan
    from w2s_ray.search.driver import compute_shared
    from w2s_ray.train.executor import LocalExecutor

    results = {}
    for label, concurrency in (("serial", "1"), ("concurrent", "3")):
        (tmp_path / label).mkdir()
        plan = tiny_plan(tmp_path / label, data_dir, "--shared-concurrency", concurrency)
        grid = [{"lr": 1e-3}, {"lr": 3e-3}]
        plan.preset = replace(plan.preset, weak_grid=grid, ceiling_grid=grid)
        plan.references = {"weak": grid, "ceiling": grid}  # the candidates compute_shared trains
        shared = compute_shared(plan, LocalExecutor())
        ledger = StageCache(plan.cache_uri).trainings()
        results[label] = (_shared_summary(shared), sorted((e["stage"], e["key"]) for e in ledger))
    assert results["concurrent"] == results["serial"]
    assert len(results["serial"][1]) == 4  # two weak and two ceiling candidates, each trained once
