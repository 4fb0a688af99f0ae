"""Stage cache: content keys, atomic publication, no partial entries, the training ledger."""

from __future__ import annotations

import pytest

from w2s_ray.config import TrainConfig
from w2s_ray.pipeline.cache import COMPLETE, StageCache, stage_key


def test_key_depends_on_every_field_and_is_stable():
    a = stage_key("weak", {"model": "m", "train": TrainConfig(lr=1e-4)})
    assert a == stage_key("weak", {"model": "m", "train": TrainConfig(lr=1e-4)})
    assert a != stage_key("weak", {"model": "m", "train": TrainConfig(lr=2e-4)})
    assert a != stage_key("ceiling", {"model": "m", "train": TrainConfig(lr=1e-4)})
    assert a != stage_key("weak", {"model": "m2", "train": TrainConfig(lr=1e-4)})


def test_put_builds_once_then_reuses(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def build(d):
        calls.append(d)
        (d / "x.txt").write_text("hello")

    first = cache.put("weak", "k1", build)
    second = cache.put("weak", "k1", build)
    assert first == second and len(calls) == 1
    assert (first / "x.txt").read_text() == "hello" and (first / COMPLETE).exists()


def test_crash_during_build_leaves_no_entry(tmp_path):
    cache = StageCache(tmp_path)

    def broken(d):
        (d / "half.parquet").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.put("weak", "k2", broken)
    assert cache.get("weak", "k2") is None
    assert not any(p.name.startswith(".k2") for p in (tmp_path / "weak").iterdir())


def test_incomplete_directory_is_not_an_entry_and_is_replaced(tmp_path):
    cache = StageCache(tmp_path)
    stale = cache.path("ceiling", "k3")
    stale.mkdir(parents=True)
    (stale / "metrics.json").write_text("{}")  # no marker: a crashed writer's leftovers
    assert cache.get("ceiling", "k3") is None
    built = cache.put("ceiling", "k3", lambda d: (d / "metrics.json").write_text('{"ok": 1}'))
    assert (built / "metrics.json").read_text() == '{"ok": 1}'


def test_ledger_counts_trainings(tmp_path):
    cache = StageCache(tmp_path)
    cache.record_training("weak", "a")
    cache.record_training("student", "b", trial_id="t1")
    stages = [t["stage"] for t in cache.trainings()]
    assert stages == ["weak", "student"]
    assert cache.trainings()[1]["trial_id"] == "t1"


def test_publish_removes_staging_left_by_a_killed_writer(tmp_path):
    cache = StageCache(tmp_path)
    stale = cache.staging_dir("ceiling", "k4")  # a writer SIGKILLed before publishing
    (stale / "half.parquet").write_text("partial")
    cache.put("ceiling", "k4", lambda d: (d / "metrics.json").write_text("{}"))
    assert not stale.exists()
    assert [p.name for p in (tmp_path / "ceiling").iterdir()] == ["k4"]
