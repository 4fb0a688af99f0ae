"""Resources per Train worker: fixed by the preset on a cluster, shared from the node when local."""

from __future__ import annotations

import types
from dataclasses import replace

import pytest

from w2s_ray.search import driver
from w2s_ray.search.cli import parse_settings
from w2s_ray.search.presets import PRESETS, get_preset


def _plan(preset: str, address: str | None, max_concurrent: int = 1, **cli: object) -> types.SimpleNamespace:
    """What ``scaling_for`` reads of a plan: the settings, the preset and the resolved fields."""
    settings = replace(parse_settings(["--task", "sst2", "--preset", preset]), address=address, **cli)
    chosen = get_preset(preset)
    return types.SimpleNamespace(settings=settings, preset=chosen, max_concurrent=max_concurrent,
                                 use_gpu=chosen.use_gpu)


def test_cluster_workers_are_sized_by_the_preset_not_by_the_head(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def head_only() -> dict:
        raise AssertionError("sized from the cluster's current nodes")

    monkeypatch.setattr(ray, "cluster_resources", head_only)
    paper = driver.scaling_for(_plan("paper", "10.0.0.5:6379"))
    assert (paper.use_gpu, paper.cpus_per_worker, paper.gpus_per_worker) == (True, 6.0, 1.0)
    quick = driver.scaling_for(_plan("quick", "auto"))
    assert (quick.use_gpu, quick.cpus_per_worker) == (False, PRESETS["quick"].cpus_per_worker)
    override = driver.scaling_for(_plan("paper", "10.0.0.5:6379", cpus_per_worker=3.0, gpus_per_worker=0.5))
    assert (override.cpus_per_worker, override.gpus_per_worker) == (3.0, 0.5)


def test_local_workers_share_the_local_node(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    local = driver.scaling_for(_plan("quick", None, max_concurrent=2))
    assert local.cpus_per_worker == pytest.approx(3.99)
    assert driver.scaling_for(_plan("quick", None, cpus_per_worker=1.5)).cpus_per_worker == 1.5


def test_every_preset_names_its_worker_resources() -> None:
    for preset in PRESETS.values():
        assert preset.cpus_per_worker > 0 and preset.gpus_per_worker > 0, preset.name
    assert PRESETS["paper"].use_gpu and PRESETS["paper"].gpus_per_worker == 1
