"""Finding GPUs before Ray starts: on this machine, on a cluster's nodes, or in node types the
autoscaler may start.

``plan_search`` asks only when neither ``--preset`` nor ``--use-gpu`` is given; a GPU anywhere
(present or startable) picks the ``paper`` preset with ``use_gpu``. Every source is read with
short timeouts and a source that cannot be read counts as "no GPUs there": detection never
fails a search (an unreachable ``--address`` is reported later by ``init_ray``).

Sources, in order:

1. no ``--address``: this machine's CUDA devices (``torch.cuda.device_count()``);
2. ``--address host:port`` (also what ``ray job submit`` gives its driver in ``RAY_ADDRESS``):
   the GCS, without ``ray.init``: GPUs on the live nodes, then the autoscaler's node groups
   (``ClusterConfig`` in the GCS key-value store, when the autoscaler reported one);
3. the cluster launcher's config on the head node (``~/ray_bootstrap_config.yaml``,
   ``available_node_types[*].resources.GPU`` with ``max_workers > 0``);
4. inside a KubeRay pod: the RayCluster's worker groups (``nvidia.com/gpu`` limits or
   ``rayStartParams.num-gpus`` with ``maxReplicas > 0``), read from the Kubernetes API with
   the pod's service account (the in-tree autoscaler's RBAC lets the head read its RayCluster).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
K8S_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GpuSupply:
    """GPUs found: on live nodes (``present``) and in node types that can still start (``startable``)."""

    present: float = 0.0
    startable: float = 0.0
    source: str = "none found"

    def __bool__(self) -> bool:
        return self.present > 0 or self.startable > 0

    def describe(self) -> str:
        parts = [f"{self.present:g} GPU(s) on live nodes"] if self.present else []
        if self.startable:
            parts.append(f"up to {self.startable:g} more from autoscaling node types")
        return f"{', '.join(parts) or 'no GPUs'} ({self.source})"


def detect_gpus(address: str | None) -> GpuSupply:
    """GPUs this search could use (see the module docstring for the sources)."""
    if not address:
        return local_gpus()
    found = [gcs_gpus(address), launcher_gpus(BOOTSTRAP_CONFIG.expanduser()), kuberay_gpus()]
    hits = [f for f in found if f]
    if not hits:
        return GpuSupply(source="; ".join(f.source for f in found))
    return GpuSupply(present=max(f.present for f in hits), startable=max(f.startable for f in hits),
                     source="; ".join(f.source for f in hits))


def local_gpus() -> GpuSupply:
    """CUDA devices on this machine."""
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install means no usable GPU
        count = 0
    return GpuSupply(present=float(count), source="local CUDA devices")


def gcs_address(address: str) -> str | None:
    """``host:port`` of the GCS for an ``--address`` (None for ``ray://`` and unresolvable ``auto``)."""
    value = address.strip()
    if value.startswith("ray://") or "://" in value:
        return None
    if value in ("auto", "local"):
        try:
            from ray._private.services import canonicalize_bootstrap_address

            return canonicalize_bootstrap_address(value)
        except Exception:  # noqa: BLE001
            return None
    return value


def gcs_gpus(address: str, timeout_s: float = TIMEOUT_S) -> GpuSupply:
    """GPUs on the cluster's live nodes, and in the autoscaler's node groups if it reported them."""
    from w2s_ray.errors import UserError
    from w2s_ray.search.driver import check_ray_reachable

    gcs = gcs_address(address)
    if gcs is None:
        return GpuSupply(source=f"{address}: not a GCS address, nodes not read")
    try:
        check_ray_reachable(gcs, timeout_s=timeout_s)
        from ray._raylet import (  # type: ignore[attr-defined]  # the stub of ray._raylet is partial
            GCS_AUTOSCALER_CLUSTER_CONFIG_KEY,
            GCS_AUTOSCALER_STATE_NAMESPACE,
            GcsClient,
        )

        client = GcsClient(address=gcs)
        nodes = client.get_all_node_info(timeout=timeout_s)
        raw = client.internal_kv_get(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(),
                                     namespace=GCS_AUTOSCALER_STATE_NAMESPACE.encode(), timeout=timeout_s)
    except (UserError, Exception):  # noqa: BLE001 - unreachable or not a GCS: init_ray says so later
        return GpuSupply(source=f"GCS {gcs} not readable")
    present = sum(float(info.resources_total.get("GPU", 0)) for info in nodes.values() if info.state == 0)  # ALIVE
    return GpuSupply(present=present, startable=_cluster_config_gpus(raw),
                     source=f"GCS {gcs}: node resources" + (", autoscaler node groups" if raw else ""))


def _cluster_config_gpus(raw: bytes | None) -> float:
    """GPUs the autoscaler's node groups could add (``ClusterConfig.node_group_configs``)."""
    if not raw:
        return 0.0
    from ray.core.generated import autoscaler_pb2

    config = autoscaler_pb2.ClusterConfig.FromString(raw)
    return _startable((g.resources.get("GPU", 0), g.max_count) for g in config.node_group_configs)


def _startable(groups: Iterable[tuple[float | None, int]]) -> float:
    """Sum of GPUs x max nodes over groups (a max of -1, unlimited, counts as one node)."""
    total = 0.0
    for gpus, max_count in groups:
        if float(gpus or 0) > 0 and max_count != 0:
            total += float(gpus or 0) * (1 if max_count < 0 else max_count)
    return total


def launcher_gpus(path: Path) -> GpuSupply:
    """GPU node types in a cluster-launcher config (what ``ray up`` writes on the head)."""
    if not path.is_file():
        return GpuSupply(source=f"no launcher config at {path}")
    import yaml

    try:
        config = yaml.safe_load(path.read_text()) or {}
        types = config.get("available_node_types") or {}
        groups = [((t.get("resources") or {}).get("GPU", 0), int(t.get("max_workers", config.get("max_workers", 0))))
                  for t in types.values()]
    except Exception:  # noqa: BLE001 - unreadable: no GPUs known from it
        return GpuSupply(source=f"launcher config {path} unreadable")
    return GpuSupply(startable=_startable(groups), source=f"launcher config {path}")


def raycluster_gpus(cluster: dict[str, Any]) -> float:
    """GPUs a RayCluster's worker groups could add (``maxReplicas`` x GPUs per pod)."""
    groups = []
    for group in (cluster.get("spec") or {}).get("workerGroupSpecs") or []:
        params = group.get("rayStartParams") or {}
        gpus: Any = params.get("num-gpus")
        if gpus is None:
            for container in ((group.get("template") or {}).get("spec") or {}).get("containers") or []:
                limits = (container.get("resources") or {}).get("limits") or {}
                if "nvidia.com/gpu" in limits:
                    gpus = limits["nvidia.com/gpu"]
                    break
        if group.get("suspend"):
            continue
        groups.append((float(gpus or 0), int(group.get("maxReplicas", group.get("replicas", 0)) or 0)))
    return _startable(groups)


def kuberay_gpus(api: str | None = None, sa_dir: Path = K8S_SA_DIR, timeout_s: float = TIMEOUT_S,
                 opener: Callable[..., Any] | None = None) -> GpuSupply:
    """GPU worker groups of the RayCluster this pod belongs to (KubeRay), via the Kubernetes API."""
    token_file = sa_dir / "token"
    if not token_file.is_file():
        return GpuSupply(source="not in a Kubernetes pod")
    if api is None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            return GpuSupply(source="no Kubernetes API address")
        api = f"https://{host}:{port}"
    try:
        namespace = (sa_dir / "namespace").read_text().strip()
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}", "Accept": "application/json"}
        context = ssl.create_default_context(cafile=str(sa_dir / "ca.crt")) if api.startswith("https") else None
        open_url = opener or urllib.request.urlopen

        def get(path: str) -> dict[str, Any]:
            request = urllib.request.Request(f"{api}{path}", headers=headers)
            with open_url(request, timeout=timeout_s, context=context) as response:
                return json.loads(response.read())

        name = os.environ.get("RAY_CLUSTER_NAME")
        if not name:  # KubeRay labels every Ray pod with its cluster
            pod = get(f"/api/v1/namespaces/{namespace}/pods/{os.environ.get('HOSTNAME', '')}")
            name = ((pod.get("metadata") or {}).get("labels") or {}).get("ray.io/cluster")
        if not name:
            return GpuSupply(source="Kubernetes pod without a ray.io/cluster label")
        cluster = get(f"/apis/ray.io/v1/namespaces/{namespace}/rayclusters/{name}")
    except Exception as exc:  # noqa: BLE001 - no RBAC, no API: no GPUs known from it
        return GpuSupply(source=f"RayCluster not readable ({type(exc).__name__})")
    return GpuSupply(startable=raycluster_gpus(cluster), source=f"RayCluster {namespace}/{name} worker groups")
