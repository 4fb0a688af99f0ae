"""Finding GPUs before Ray starts (``w2s_ray/search/gpus.py``) and the model chain of an implicit preset.

Offline: the shipped launcher configs and KubeRay manifest are read as the head would read
them, the Kubernetes API is a loopback HTTP server. The live-GCS sources are in
``tests/test_gpu_placement.py`` (a local Ray node that declares GPUs).
"""

from __future__ import annotations

import json
import threading
import types
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from w2s_ray.search import driver, gpus
from w2s_ray.search.cli import parse_settings
from w2s_ray.search.presets import get_preset

REPO = Path(__file__).resolve().parents[1]


def test_shipped_launcher_configs_have_startable_gpus() -> None:
    aws = gpus.launcher_gpus(REPO / "clusters" / "aws.yaml")
    gcp = gpus.launcher_gpus(REPO / "clusters" / "gcp.yaml")
    assert (aws.present, aws.startable) == (0, 8 * 1 + 2 * 8)  # gpu_small 0..8 x 1, gpu_large 0..2 x 8
    assert (gcp.present, gcp.startable) == (0, 8 * 1 + 2 * 4)
    assert not gpus.launcher_gpus(REPO / "no-such.yaml")


def test_launcher_config_without_gpu_types_has_none(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"max_workers": 4, "available_node_types": {
        "head": {"resources": {"CPU": 0}, "max_workers": 0},
        "cpu": {"resources": {"CPU": 8}, "max_workers": 4},
        "gpu_off": {"resources": {"CPU": 8, "GPU": 1}, "max_workers": 0}}}))
    assert not gpus.launcher_gpus(cfg)
    cfg.write_text("{not yaml")
    assert not gpus.launcher_gpus(cfg)


def test_shipped_raycluster_worker_groups_count_their_gpus() -> None:
    cluster = yaml.safe_load((REPO / "clusters" / "kuberay" / "raycluster.yaml").read_text())
    assert gpus.raycluster_gpus(cluster) == 8 * 1 + 2 * 4  # gpu-small 0..8 x 1, gpu-large 0..2 x 4
    cluster["spec"]["workerGroupSpecs"][0]["rayStartParams"] = {"num-gpus": "2"}
    assert gpus.raycluster_gpus(cluster) == 8 * 2 + 2 * 4


def test_autoscaler_cluster_config_node_groups() -> None:
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig(node_group_configs=[
        autoscaler_pb2.NodeGroupConfig(name="cpu", resources={"CPU": 16}, max_count=4),
        autoscaler_pb2.NodeGroupConfig(name="gpu", resources={"CPU": 8, "GPU": 1}, max_count=3),
        autoscaler_pb2.NodeGroupConfig(name="big", resources={"CPU": 8, "GPU": 4}, max_count=0)])
    assert gpus._cluster_config_gpus(config.SerializeToString()) == 3
    assert gpus._cluster_config_gpus(None) == 0


class _FakeKubeApi(BaseHTTPRequestHandler):
    """GET pod and RayCluster, answering only with the right bearer token."""

    routes: ClassVar[dict[str, dict]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        body = self.routes.get(self.path)
        if self.headers.get("Authorization") != "Bearer sa-token" or body is None:
            self.send_response(403 if body is not None else 404)
            self.end_headers()
            return
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


def test_kuberay_worker_groups_from_the_kubernetes_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token\n")
    (sa / "namespace").write_text("research")
    cluster = yaml.safe_load((REPO / "clusters" / "kuberay" / "raycluster.yaml").read_text())
    _FakeKubeApi.routes = {
        "/api/v1/namespaces/research/pods/w2s-ray-head-abcde": {"metadata": {"labels": {"ray.io/cluster": "w2s-ray"}}},
        "/apis/ray.io/v1/namespaces/research/rayclusters/w2s-ray": cluster,
    }
    _FakeKubeApi.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.delenv("RAY_CLUSTER_NAME", raising=False)
        monkeypatch.setenv("HOSTNAME", "w2s-ray-head-abcde")
        found = gpus.kuberay_gpus(api=api, sa_dir=sa)
        assert (found.present, found.startable) == (0, 16), found
        assert "research/w2s-ray" in found.source
        monkeypatch.setenv("RAY_CLUSTER_NAME", "w2s-ray")  # named directly: no pod lookup
        _FakeKubeApi.seen = []
        assert gpus.kuberay_gpus(api=api, sa_dir=sa).startable == 16
        assert _FakeKubeApi.seen == ["/apis/ray.io/v1/namespaces/research/rayclusters/w2s-ray"]
        (sa / "token").write_text("wrong")  # no RBAC: no GPUs known, no error
        assert not gpus.kuberay_gpus(api=api, sa_dir=sa)
    finally:
        server.shutdown()
    assert not gpus.kuberay_gpus(api=api, sa_dir=tmp_path / "not-a-pod")


def test_no_gpus_here_keeps_the_cpu_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert not torch.cuda.is_available()  # the CPU build these tests run on
    plain = parse_settings(["--task", "sst2"])
    assert driver.gpu_request(plain) is None and driver.default_preset_name(None) == "probe"
    monkeypatch.setattr(gpus, "local_gpus", lambda: gpus.GpuSupply(present=2, source="fake"))
    assert driver.gpu_request(plain) is True and driver.default_preset_name(True) == "paper"
    # a named preset or an explicit --use-gpu is never overridden by what is found
    assert driver.gpu_request(parse_settings(["--task", "sst2", "--preset", "quick"])) is None
    assert driver.gpu_request(parse_settings(["--task", "sst2", "--use-gpu"])) is True


def test_unreachable_address_detects_nothing_quickly() -> None:
    found = gpus.detect_gpus("127.0.0.1:1")
    assert not found and "not readable" in found.source
    assert not gpus.detect_gpus("ray://127.0.0.1:1")


def _space(weak, strong, ladder):
    return types.SimpleNamespace(weak=weak, strong=strong, ladder=tuple(ladder))


def test_an_implicit_preset_owns_the_whole_model_chain() -> None:
    minilm = _space("sentence-transformers/all-MiniLM-L6-v2@L1", "sentence-transformers/all-MiniLM-L6-v2",
                    ["sentence-transformers/all-MiniLM-L6-v2@L2", "sentence-transformers/all-MiniLM-L6-v2@L4"])
    implicit = parse_settings(["--task", "sst2"])
    paper = driver.model_chain(implicit, get_preset("paper"), minilm)
    assert paper == ("gpt2", "gpt2-xl", ["gpt2-medium", "gpt2-large"])
    weak, strong, ladder = driver.model_chain(implicit, get_preset("probe"), minilm)
    assert (weak, strong) == (get_preset("probe").weak, get_preset("probe").strong)
    assert ladder == list(get_preset("probe").ladder)
    # a preset without a ladder (quick) takes the space's ladder, and its pair when it is implicit
    quick = get_preset("quick")
    assert driver.model_chain(replace(implicit, preset="quick"), quick, minilm) == (
        quick.weak, quick.strong, list(minilm.ladder))
    assert driver.model_chain(implicit, quick, minilm) == (minilm.weak, minilm.strong, list(minilm.ladder))
    cli = replace(implicit, weak="gpt2@L6")
    assert driver.model_chain(cli, get_preset("paper"), minilm)[0] == "gpt2@L6"
