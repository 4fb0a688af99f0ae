"""GPU requests and placement on a local Ray node that declares two GPUs it does not have.

No CUDA here (the CPU torch build): Ray still assigns the declared GPUs (``CUDA_VISIBLE_DEVICES``,
accelerator ids), and every training falls back to the CPU. What is checked is what each Train
worker asked for and was given, that the search finds the GPUs by itself, and that fractional
GPUs pack several trainings onto one GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray_cluster import LocalRay, tiny_space

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def gpu_cluster():
    ray = LocalRay()
    ray.start_head(num_cpus=4, num_gpus=2)
    try:
        yield ray
    finally:
        ray.stop()


def test_the_clusters_gpus_are_found_without_flags(gpu_cluster) -> None:
    from w2s_ray.search import driver, gpus
    from w2s_ray.search.cli import parse_settings

    found = gpus.detect_gpus(gpu_cluster.address)
    assert found.present == 2, found
    settings = parse_settings(["--task", "sst2", "--address", gpu_cluster.address])
    assert driver.gpu_request(settings) is True


def test_autoscaler_node_groups_in_the_gcs_count_as_startable_gpus() -> None:
    """A CPU-only head whose autoscaler reported a GPU node group (``ReportClusterConfig``)."""
    from ray._raylet import GcsClient
    from ray.core.generated import autoscaler_pb2

    from w2s_ray.search import gpus

    head = LocalRay()
    head.start_head(num_cpus=1)
    try:
        assert not gpus.gcs_gpus(head.address)
        config = autoscaler_pb2.ClusterConfig(node_group_configs=[
            autoscaler_pb2.NodeGroupConfig(name="gpu-small", resources={"CPU": 8, "GPU": 1}, min_count=0, max_count=8)])
        GcsClient(address=head.address).report_cluster_config(config.SerializeToString())
        found = gpus.gcs_gpus(head.address)
        assert (found.present, found.startable) == (0, 8), found
    finally:
        head.stop()


def test_fractional_gpus_pack_two_trainings_per_gpu(gpu_cluster) -> None:
    """Four trainings sized like ``--gpus-per-worker 0.5`` hold their resources at once on two GPUs."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from w2s_ray.train.executor import ScalingSpec

    worker = ScalingSpec(use_gpu=True, cpus_per_worker=0.5, gpus_per_worker=0.5).to_ray().resources_per_worker
    assert worker == {"CPU": 0.5, "GPU": 0.5}
    ray.init(address=gpu_cluster.address, include_dashboard=False)
    try:
        groups = [placement_group([worker]) for _ in range(4)]  # Train V2: one bundle per worker
        ray.get([g.ready() for g in groups], timeout=60)

        @ray.remote
        def where() -> tuple[list[str], dict]:
            ctx = ray.get_runtime_context()
            return ctx.get_accelerator_ids()["GPU"], ctx.get_assigned_resources()

        got = ray.get([where.options(num_cpus=0.5, num_gpus=0.5, scheduling_strategy=PlacementGroupSchedulingStrategy(
            g, placement_group_bundle_index=0)).remote() for g in groups], timeout=60)
        for g in groups:
            remove_placement_group(g)
    finally:
        ray.shutdown()
    ids = sorted(gpu for gpu_ids, _ in got for gpu in gpu_ids)
    assert ids == ["0", "0", "1", "1"], got
    assert all(res.get("GPU") == 0.5 for _, res in got), got


def test_search_on_gpus_requests_a_gpu_per_worker_and_trains_on_the_cpu(gpu_cluster, tmp_path, data_dir) -> None:
    """A tiny search with ``--use-gpu --gpus-per-worker 0.5``: every Train worker (shared stages and
    students) got half a GPU and 0.5 CPU from Ray, saw that GPU in ``CUDA_VISIBLE_DEVICES`` and
    trained on the CPU (this torch has no CUDA)."""
    (tmp_path / "space.yaml").write_text(tiny_space(epochs=1))
    storage = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "w2s_ray.search", "--task", "sst2", "--preset", "tiny", "--space",
         str(tmp_path / "space.yaml"), "--num-samples", "2", "--max-concurrent", "2", "--use-gpu",
         "--gpus-per-worker", "0.5", "--cpus-per-worker", "0.5", "--address", gpu_cluster.address,
         "--data-dir", data_dir, "--storage", str(storage), "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
         "--confirm-seeds", "0"],
        cwd=REPO, env={**gpu_cluster.environ(), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    placements = [json.loads(p.read_text()) for p in storage.rglob("metrics.json")]
    stages = sorted(m["stage"] for m in placements)
    assert "weak" in stages and "ceiling" in stages and stages.count("student") >= 1, stages
    for m in placements:
        where = m["placement"]
        assert where["assigned_resources"] == {"CPU": 0.5, "GPU": 0.5}, (m["stage"], where)
        assert len(where["accelerator_ids"]["GPU"]) == 1 and where["accelerator_ids"]["GPU"][0] in ("0", "1")
        assert where["cuda_visible_devices"] == where["accelerator_ids"]["GPU"][0]
        assert where["device"] == "cpu"
