"""clusters/: cloud launcher configs and KubeRay manifests, validated offline.

Launcher YAMLs go through Ray's own ``prepare_config`` + ``validate_config`` (never
``bootstrap_config``, which calls the cloud) with sockets blocked. KubeRay manifests are validated
against the openAPIV3Schema of the CRDs in ``../shared/schemas/kuberay`` (see _kuberay_schema).
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

try:
    from _kuberay_schema import SCHEMA_DIR, validate_manifest
except ImportError:  # tests/ imported as a package
    from tests._kuberay_schema import SCHEMA_DIR, validate_manifest

REPO = Path(__file__).resolve().parents[1]
CLUSTERS = REPO / "clusters"
LAUNCHERS = {"aws": CLUSTERS / "aws.yaml", "gcp": CLUSTERS / "gcp.yaml"}
RAYCLUSTER = CLUSTERS / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTERS / "kuberay" / "rayjob.yaml"
MANIFESTS = sorted((CLUSTERS / "kuberay").glob("*.yaml"))
SETUP_SCRIPTS = {"aws": CLUSTERS / "aws-setup.sh", "gcp": CLUSTERS / "gcp-setup.sh"}

SERVICE_PORTS = (8265, 10001, 5000)  # dashboard / job server, Ray client, MLflow
WORLD = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
GCP_PLACEHOLDER = "${W2S_GCP_PROJECT}"
SSH_PLACEHOLDER = "${W2S_SSH_CIDR}"
PLACEHOLDERS = {"aws": {SSH_PLACEHOLDER}, "gcp": {GCP_PLACEHOLDER}}
USER_CIDR = "203.0.113.7/32"


# --- helpers -------------------------------------------------------------------------------------


def project_ray_version() -> str:
    """The X in the project's ``ray[...]==X`` dependency pin (pyproject.toml)."""
    pins = re.findall(r'"ray(?:\[[^\]]*\])?==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert len(pins) == 1, f"expected one ray==X pin in pyproject.toml, got {pins}"
    return pins[0]


def load_launcher(name: str, project: str | None = "w2s-test-project") -> dict[str, Any]:
    """A launcher config as `ray up` would read it, after `envsubst` of its placeholders
    (GCP: the project, AWS: the SSH CIDR); ``project=None`` leaves them in."""
    text = LAUNCHERS[name].read_text()
    if project is not None:
        text = text.replace(GCP_PLACEHOLDER, project).replace(SSH_PLACEHOLDER, USER_CIDR)
    return yaml.safe_load(text)


def check_worker_bounds(config: dict[str, Any]) -> None:
    """Per-node-type min_workers <= max_workers (Ray only checks the sum against the global cap)."""
    for name, node_type in config["available_node_types"].items():
        low, high = node_type.get("min_workers", 0), node_type.get("max_workers", 0)
        if low > high:
            raise ValueError(f"node type {name}: min_workers {low} > max_workers {high}")


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """Ray's offline validation (defaults filled in), plus the per-type worker bounds."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    check_worker_bounds(prepared)
    return prepared


def node_types(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(head node type, {name: GPU worker node type})."""
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    gpus = {
        n: t
        for n, t in types.items()
        if n != config["head_node_type"] and t["resources"].get("GPU", 0) > 0
    }
    return head, gpus


def is_spot(provider: str, node_config: dict[str, Any]) -> bool:
    if provider == "aws":
        return node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    scheduling = node_config.get("scheduling", {})
    return scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible") is True


def _ports(perm: dict[str, Any]) -> range:
    if str(perm.get("IpProtocol")) == "-1" or perm.get("FromPort", -1) == -1:
        return range(0, 65536)
    return range(perm["FromPort"], perm.get("ToPort", perm["FromPort"]) + 1)


def _is_world(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    return any(net.version == w.version and net.prefixlen == 0 for w in WORLD)


def launcher_world_open_ports(config: dict[str, Any]) -> set[int]:
    """Service ports that a launcher config's own firewall rules open to the whole internet."""
    perms = config["provider"].get("security_group", {}).get("IpPermissions", [])
    opened: set[int] = set()
    for perm in perms:
        cidrs = [r.get("CidrIp", "") for r in perm.get("IpRanges", [])]
        cidrs += [r.get("CidrIpv6", "") for r in perm.get("Ipv6Ranges", [])]
        if any(_is_world(c) for c in cidrs if c):
            opened |= {p for p in SERVICE_PORTS if p in _ports(perm)}
    return opened


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def cluster_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The RayCluster specs inside a manifest document (a RayJob embeds one)."""
    if doc.get("kind") == "RayCluster":
        return [doc["spec"]]
    if doc.get("kind") == "RayJob" and "rayClusterSpec" in doc["spec"]:
        return [doc["spec"]["rayClusterSpec"]]
    return []


def pod_specs(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield spec["headGroupSpec"]["template"]["spec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["template"]["spec"]


def gpu_count(pod: dict[str, Any]) -> int:
    return sum(
        int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
        for c in pod["containers"]
    )


def kuberay_exposures(doc: dict[str, Any]) -> list[str]:
    """Ways a manifest document reaches outside the Kubernetes cluster network."""
    problems = []
    for spec in cluster_specs(doc):
        head = spec["headGroupSpec"]
        if head.get("serviceType", "ClusterIP") != "ClusterIP":
            problems.append(f"head serviceType {head['serviceType']}")
        if head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") != "ClusterIP":
            problems.append("head Service override is not ClusterIP")
        if head.get("enableIngress"):
            problems.append("head Ingress enabled")
        for pod in pod_specs(spec):
            if pod.get("hostNetwork"):
                problems.append("hostNetwork pod")
            for c in pod["containers"]:
                for port in c.get("ports", []):
                    if "hostPort" in port:
                        problems.append(f"hostPort {port['hostPort']}")
    if doc.get("kind") == "Service":
        spec = doc.get("spec", {})
        if spec.get("type", "ClusterIP") != "ClusterIP":
            problems.append(f"Service type {spec['type']}")
        if spec.get("externalIPs"):
            problems.append("Service externalIPs")
    if doc.get("kind") in ("Ingress", "Gateway", "HTTPRoute"):
        problems.append(doc["kind"])
    if doc.get("kind") == "NetworkPolicy":
        for rule in doc.get("spec", {}).get("ingress", []):
            world = any(
                _is_world(p.get("ipBlock", {}).get("cidr", "10.0.0.0/8"))
                for p in rule.get("from", [])
            )
            ports = {p.get("port") for p in rule.get("ports", [])} or set(SERVICE_PORTS)
            if world and ports & set(SERVICE_PORTS):
                problems.append(
                    f"NetworkPolicy opens {sorted(ports & set(SERVICE_PORTS))} to the world"
                )
    return problems


CREDENTIAL_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret/session key": re.compile(r"(?i)aws_(?:secret_access_key|session_token)\s*[:=]"),
    "password field": re.compile(r"(?i)\bpassw(?:or)?d\s*[:=]"),
    "credentials in a URL": re.compile(r"://[^\s/:@'\"]+:[^\s/@'\"]+@"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GCP service-account key": re.compile(r"\"private_key(?:_id)?\"\s*:"),
    "GCP API key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,})\b"),
    "literal secret/token": re.compile(
        r"(?i)\b(?:secret|token|api_key|apikey)\s*[:=]\s*['\"]?[A-Za-z0-9/+_\-]{16,}"
    ),
}


def credential_findings(text: str) -> list[str]:
    return [name for name, pattern in CREDENTIAL_PATTERNS.items() if pattern.search(text)]


def shell_commands(script: str) -> list[str]:
    """A shell script's commands, with backslash-continued lines joined."""
    return [c.strip() for c in script.replace("\\\n", " ").splitlines() if c.strip()]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve or connect fails the test: validation must be offline."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access during offline validation: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# --- launcher configs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_config_passes_ray_validation_offline(name: str, no_network: None) -> None:
    prepared = ray_validate(load_launcher(name))
    assert prepared["provider"]["type"] == name
    # prepare_config merged Ray's provider defaults, and we kept no legacy fields.
    assert "cluster_synced_files" in prepared and "head_node" not in prepared


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_config_validates_before_substitution_and_needs_only_its_placeholder(
    name: str, no_network: None
) -> None:
    raw = LAUNCHERS[name].read_text()
    assert set(re.findall(r"\$\{[^}]*\}", raw)) == PLACEHOLDERS[name]
    ray_validate(load_launcher(name, project=None))


def _rename(config: dict[str, Any], old: str, new: str) -> None:
    config[new] = config.pop(old)


LAUNCHER_BREAKAGES: dict[str, tuple[Any, type[Exception]]] = {
    # typo'd keys: Ray's JSON schema rejects unknown fields
    "typo-max_worker": (
        lambda c: _rename(c, "max_workers", "max_worker"),
        jsonschema.ValidationError,
    ),
    "typo-idle_timeout": (lambda c: c.update(idle_timeout_minute=5), jsonschema.ValidationError),
    "typo-node-min_worker": (
        lambda c: c["available_node_types"]["gpu_small"].update(min_worker=1),
        jsonschema.ValidationError,
    ),
    "typo-docker-imag": (lambda c: c["docker"].update(imag="x"), jsonschema.ValidationError),
    "resource-not-int": (
        lambda c: c["available_node_types"]["gpu_small"].update(resources={"GPU": "one"}),
        jsonschema.ValidationError,
    ),
    # a node type's min_workers above the global max_workers: Ray's validate_config
    "min-above-global-max": (
        lambda c: c["available_node_types"]["gpu_small"].update(min_workers=11, max_workers=11),
        ValueError,
    ),
    # a node type's min_workers above its own max_workers: check_worker_bounds
    "min-above-type-max": (
        lambda c: c["available_node_types"]["gpu_large"].update(min_workers=2, max_workers=1),
        ValueError,
    ),
}


@pytest.mark.parametrize("breakage", sorted(LAUNCHER_BREAKAGES))
@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_broken_launcher_copy_fails_validation(name: str, breakage: str, no_network: None) -> None:
    config = load_launcher(name)
    mutate, error = LAUNCHER_BREAKAGES[breakage]
    mutate(config)
    with pytest.raises(error):
        ray_validate(config)


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_head_is_cpu_only_and_on_demand(name: str) -> None:
    prepared = ray_validate(load_launcher(name))
    head, _ = node_types(prepared)
    assert head["resources"] == {"CPU": 0}
    assert head["max_workers"] == 0
    assert not is_spot(name, head["node_config"])


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_gpu_workers_autoscale_from_zero_on_spot(name: str) -> None:
    prepared = ray_validate(load_launcher(name))
    _, gpus = node_types(prepared)
    assert len(gpus) >= 2, f"expected a default and a larger GPU type, got {sorted(gpus)}"
    for type_name, node_type in gpus.items():
        assert node_type["min_workers"] == 0, type_name
        assert 1 <= node_type["max_workers"] <= prepared["max_workers"], type_name
        assert is_spot(name, node_type["node_config"]), f"{type_name} is not spot/preemptible"
    assert prepared["idle_timeout_minutes"] > 0


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_second_gpu_type_is_larger(name: str) -> None:
    _, gpus = node_types(load_launcher(name))
    by_size = sorted(gpus.values(), key=lambda t: t["resources"]["GPU"])
    small, large = by_size[0], by_size[-1]
    assert large["resources"]["GPU"] > small["resources"]["GPU"]
    machine = "InstanceType" if name == "aws" else "machineType"
    assert large["node_config"][machine] != small["node_config"][machine]


def test_images_are_pinned_to_the_project_ray_version() -> None:
    version = project_ray_version()
    assert version == ray.__version__, "the venv's ray differs from the pyproject pin"
    image = f"rayproject/ray:{version}-py311-gpu"
    for name in LAUNCHERS:
        docker = load_launcher(name)["docker"]
        assert docker["image"] == image
        assert docker.get("head_image", image) == docker.get("worker_image", image) == image
    from_lines = re.findall(r"(?m)^FROM\s+(\S+)", (CLUSTERS / "Dockerfile").read_text())
    assert from_lines == [image]
    for path in (RAYCLUSTER, RAYJOB):
        for doc in load_docs(path):
            for spec in cluster_specs(doc):
                assert spec["rayVersion"] == version
                images = {c["image"] for pod in pod_specs(spec) for c in pod["containers"]}
                assert len(images) == 1, images  # one image, built from clusters/Dockerfile
                assert images.pop().endswith(f"-ray{version}-py311-gpu")


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_project_is_installed_on_every_node(name: str) -> None:
    prepared = ray_validate(load_launcher(name))
    synced = [remote for remote, local in prepared["file_mounts"].items() if local == "."]
    assert synced, "the repository root is not synced to the nodes"
    installs = [c for c in prepared["setup_commands"] if re.search(r"\bpip install\b", c)]
    assert any(remote in c for c in installs for remote in synced)
    for key in ("head_setup_commands", "worker_setup_commands"):  # merged by prepare_config
        assert set(installs) <= set(prepared[key]), key
    assert ".gitignore" in prepared["rsync_filter"]  # keeps .venv and run outputs off the nodes


# --- network exposure ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_configs_open_no_service_port_to_the_world(name: str) -> None:
    config = load_launcher(name)
    assert launcher_world_open_ports(config) == set()
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    types = config["available_node_types"].values()
    if name == "aws":
        # A pre-created group (aws-setup.sh): otherwise Ray makes one with SSH open to 0.0.0.0/0.
        assert config["provider"]["security_group"]["GroupName"] == "w2s-ray-sg"
    else:
        for node_type in types:  # the w2s-ray VPC and tag that gcp-setup.sh firewalls
            assert node_type["node_config"]["tags"]["items"] == ["w2s-ray"]
            (nic,) = node_type["node_config"]["networkInterfaces"]
            assert nic["subnetwork"].endswith("/subnetworks/w2s-ray")


def test_open_port_check_catches_world_open_rules() -> None:
    config = load_launcher("aws")
    config["provider"]["security_group"]["IpPermissions"] = [
        {
            "IpProtocol": "tcp",
            "FromPort": 8000,
            "ToPort": 9000,
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
        },
        {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
    ]
    assert launcher_world_open_ports(config) == set(SERVICE_PORTS)
    config["provider"]["security_group"]["IpPermissions"] = [
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/16"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    ]
    assert launcher_world_open_ports(config) == set()


@pytest.mark.parametrize("name", sorted(SETUP_SCRIPTS))
def test_setup_scripts_open_only_ssh_from_one_cidr(name: str) -> None:
    path = SETUP_SCRIPTS[name]
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert "0.0.0.0" not in text and "::/0" not in text
    outside = [c for c in shell_commands(text) if re.search(r"--(cidr|source-ranges)\b", c)]
    assert len(outside) == 1, outside
    (rule,) = outside
    assert '"$W2S_SSH_CIDR"' in rule
    assert re.search(r"--port 22\b|--allow tcp:22\b", rule), rule


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "203.0.113.7"])
@pytest.mark.parametrize("name", sorted(SETUP_SCRIPTS))
def test_setup_scripts_refuse_bad_ssh_cidr_before_touching_the_cloud(
    name: str, cidr: str, tmp_path: Path
) -> None:
    marker = tmp_path / "cloud-called"
    for cli in ("aws", "gcloud"):  # stand-ins that record any call
        fake = tmp_path / cli
        fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
        fake.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "W2S_SSH_CIDR": cidr,
        "W2S_BUCKET": "w2s-test-bucket",
        "W2S_GCP_PROJECT": "w2s-test-project",
    }
    result = subprocess.run(
        ["bash", str(SETUP_SCRIPTS[name])], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "W2S_SSH_CIDR" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kuberay_manifests_stay_inside_the_cluster(path: Path) -> None:
    docs = load_docs(path)
    for doc in docs:
        assert kuberay_exposures(doc) == [], doc.get("kind")
    for spec in (s for d in docs for s in cluster_specs(d)):
        assert spec["authOptions"]["mode"] == "token"


def test_exposure_check_catches_public_services() -> None:
    (doc,) = load_docs(RAYCLUSTER)
    doc["spec"]["headGroupSpec"]["serviceType"] = "LoadBalancer"
    doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["ports"] = [
        {"containerPort": 8265, "hostPort": 8265}
    ]
    assert len(kuberay_exposures(doc)) == 2
    service = {"apiVersion": "v1", "kind": "Service", "spec": {"type": "NodePort"}}
    assert kuberay_exposures(service) == ["Service type NodePort"]
    policy = {
        "kind": "NetworkPolicy",
        "spec": {
            "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 5000}]}]
        },
    }
    assert kuberay_exposures(policy) != []


# --- KubeRay manifests ---------------------------------------------------------------------------


def test_schemas_are_read_in_place() -> None:
    assert SCHEMA_DIR == REPO.parent / "shared" / "schemas" / "kuberay"
    assert not list(REPO.rglob("ray.io_*.yaml*")), "CRDs must not be copied into the project"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_its_crd(path: Path) -> None:
    docs = load_docs(path)
    assert docs
    for doc in docs:
        validate_manifest(doc)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,46}[a-z0-9])?", doc["metadata"]["name"])


def _worker(doc: dict[str, Any]) -> dict[str, Any]:
    return cluster_specs(doc)[0]["workerGroupSpecs"][0]


def _worker_limits(doc: dict[str, Any]) -> dict[str, Any]:
    return _worker(doc)["template"]["spec"]["containers"][0]["resources"]["limits"]


MANIFEST_BREAKAGES = {
    "replicas-two": lambda d: _worker(d).update(replicas="two"),
    "typo-minReplica": lambda d: _worker(d).update(minReplica=0),
    "no-maxReplicas": lambda d: _worker(d).pop("maxReplicas"),
    "gpu-one": lambda d: _worker_limits(d).update({"nvidia.com/gpu": "one"}),
    "autoscaling-yes": lambda d: cluster_specs(d)[0].update(enableInTreeAutoscaling="yes"),
}


@pytest.mark.parametrize("breakage", sorted(MANIFEST_BREAKAGES))
@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_broken_manifest_fails_validation(path: Path, breakage: str) -> None:
    (doc,) = load_docs(path)
    MANIFEST_BREAKAGES[breakage](doc)
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(doc)


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_gpu_worker_groups_autoscale_from_zero(path: Path) -> None:
    (doc,) = load_docs(path)
    (spec,) = cluster_specs(doc)
    assert spec["enableInTreeAutoscaling"] is True
    head_pod = spec["headGroupSpec"]["template"]["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0" and gpu_count(head_pod) == 0
    groups = [g for g in spec["workerGroupSpecs"] if gpu_count(g["template"]["spec"]) > 0]
    assert len(groups) >= 2, "expected a default and a larger GPU worker group"
    for group in groups:
        pod = group["template"]["spec"]
        assert group["minReplicas"] == 0 and group.get("replicas", 0) == 0
        assert group["maxReplicas"] >= 1
        assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))
        shm = [
            m["name"]
            for c in pod["containers"]
            for m in c.get("volumeMounts", [])
            if m["mountPath"] == "/dev/shm"
        ]
        assert shm, f"{group['groupName']} has no /dev/shm mount"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert all(volumes[n]["emptyDir"]["medium"] == "Memory" for n in shm)
    sizes = sorted(gpu_count(g["template"]["spec"]) for g in groups)
    assert sizes[-1] > sizes[0]


def test_rayjob_runs_the_search_with_storage() -> None:
    (job,) = load_docs(RAYJOB)
    tokens = shlex.split(job["spec"]["entrypoint"])
    assert tokens[:5] == ["python", "-m", "w2s_ray.search", "--task", "rm"]
    assert "--storage" in tokens
    assert "W2S_STORAGE" in tokens[tokens.index("--storage") + 1]
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_rayjob_cluster_is_the_raycluster() -> None:
    (cluster,) = load_docs(RAYCLUSTER)
    (job,) = load_docs(RAYJOB)
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]


# --- secrets and docs ----------------------------------------------------------------------------


def test_no_credentials_in_clusters_dir() -> None:
    files = [p for p in CLUSTERS.rglob("*") if p.is_file()]
    assert len(files) >= 8
    found = {
        str(p.relative_to(REPO)): credential_findings(p.read_text(errors="replace")) for p in files
    }
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize(
    "text",
    [
        "aws_access_key_id = AKIAABCDEFGHIJKLMNOP",
        "aws_secret_access_key: abc",
        "  password: hunter2",
        "MLFLOW_TRACKING_URI=postgresql://mlflow:s3cret@db:5432/mlflow",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        '{"type": "service_account", "private_key": "..."}',
        "token: 0123456789abcdef0123",
    ],
)
def test_credential_scan_catches_planted_secrets(text: str) -> None:
    assert credential_findings(text)


def test_readme_covers_the_workflow() -> None:
    readme = (CLUSTERS / "README.md").read_text()
    for needle in [
        "ray up",
        "ray job submit",
        "--working-dir",
        "--runtime-env-json",
        "MLFLOW_TRACKING_URI",
        "python -m w2s_ray.search --task rm --preset paper --use-gpu --storage",
        "W2S_DATA_DIR",
        "Hugging Face hub",
        "ray job logs",
        "ray dashboard",
        "ray down",
        "kubectl apply",
        "kubectl port-forward",
        "idle_timeout_minutes",
        "max_failures",
        "--resume",
    ]:
        assert needle in readme, needle


def test_readme_search_commands_name_the_preset() -> None:
    readme = (CLUSTERS / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", readme, re.S)).replace("\\\n", " ")
    commands = re.findall(r"python -m w2s_ray\.search --task rm[^\n]*", blocks)
    assert commands
    for command in commands:
        assert "--preset" in command, command


# --- least privilege ---------------------------------------------------------------------------------

# boto3 calls in Ray's AWS node provider (it runs on the head with the head's role) -> IAM action
RAY_EC2_CALLS = {
    "create_instances": "ec2:RunInstances", "create_tags": "ec2:CreateTags",
    "terminate_instances": "ec2:TerminateInstances", "terminate": "ec2:TerminateInstances",
    "describe_instance_types": "ec2:DescribeInstanceTypes", "describe_images": "ec2:DescribeImages",
    "filter": "ec2:DescribeInstances", "start_instances": "ec2:StartInstances",
    "stop_instances": "ec2:StopInstances", "stop": "ec2:StopInstances",
}
ONLY_WITH_CACHED_NODES = {"ec2:StartInstances", "ec2:StopInstances"}


def aws_head_policy() -> dict[str, Any]:
    """The head role's inline policy from aws-setup.sh, with the script's variables filled in."""
    import json

    text = SETUP_SCRIPTS["aws"].read_text()
    body = re.search(r'AUTOSCALER_POLICY="\$\(cat <<JSON\n(.*?)\nJSON\n', text, re.S)
    assert body, "aws-setup.sh has no AUTOSCALER_POLICY heredoc"
    filled = (body.group(1).replace("$REGION", "us-west-2").replace("$ACCOUNT", "123456789012")
              .replace("$WORKER_ROLE", "w2s-ray-worker"))
    return json.loads(filled)


def policy_actions(policy: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        acts = statement["Action"]
        actions |= {acts} if isinstance(acts, str) else set(acts)
    return actions


def test_aws_head_role_gets_only_the_autoscalers_ec2_calls_and_passrole() -> None:
    text = SETUP_SCRIPTS["aws"].read_text()
    commands = shell_commands(text)
    assert not [c for c in commands if "attach-role-policy" in c], "no managed policies on the roles"
    assert all("detach-role-policy" in c for c in commands if "FullAccess" in c and not c.startswith("#"))
    policy = aws_head_policy()
    actions = policy_actions(policy)
    assert all("*" not in a for a in actions), actions
    assert {a.split(":")[0] for a in actions} == {"ec2", "iam"}
    assert {a for a in actions if a.startswith("iam:")} == {"iam:PassRole"}
    # every EC2 call Ray's node provider makes from the head is allowed, and nothing else
    source = (Path(ray.__file__).parent / "autoscaler" / "_private" / "aws" / "node_provider.py").read_text()
    used = {RAY_EC2_CALLS[m] for m in re.findall(r"\.(\w+)\(", source) if m in RAY_EC2_CALLS}
    assert load_launcher("aws")["provider"]["cache_stopped_nodes"] is False
    assert actions == (used - ONLY_WITH_CACHED_NODES) | {"ec2:DescribeInstances", "iam:PassRole"}
    (pass_role,) = [st for st in policy["Statement"] if st["Action"] == "iam:PassRole"]
    assert pass_role["Resource"] == "arn:aws:iam::123456789012:role/w2s-ray-worker"
    terminate = [st for st in policy["Statement"] if "ec2:TerminateInstances" in st["Action"]]
    assert terminate and all("ec2:ResourceTag/ray-cluster-name" in str(st.get("Condition")) for st in terminate)


def test_aws_policy_check_catches_broad_grants() -> None:
    policy = aws_head_policy()
    policy["Statement"].append({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"})
    assert any("*" in a for a in policy_actions(policy))


@pytest.mark.parametrize("node_type", ["head", "gpu_small", "gpu_large"])
def test_aws_nodes_require_imdsv2_and_encrypt_their_disks(node_type: str) -> None:
    prepared = ray_validate(load_launcher("aws"))
    node_config = prepared["available_node_types"][node_type]["node_config"]
    assert node_config["MetadataOptions"]["HttpTokens"] == "required"
    assert node_config["MetadataOptions"].get("HttpEndpoint", "enabled") == "enabled"
    disks = node_config["BlockDeviceMappings"]
    assert disks and all(d["Ebs"]["Encrypted"] is True for d in disks)


def test_aws_security_group_is_defined_in_the_yaml_with_ssh_from_the_users_cidr() -> None:
    group = load_launcher("aws")["provider"]["security_group"]
    assert group["GroupName"] == "w2s-ray-sg"
    (rule,) = group["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [USER_CIDR] and not rule.get("Ipv6Ranges")
    raw = yaml.safe_load(LAUNCHERS["aws"].read_text())["provider"]["security_group"]
    assert raw["IpPermissions"][0]["IpRanges"][0]["CidrIp"] == SSH_PLACEHOLDER
    # aws-setup.sh creates the group with this rule (and the intra-cluster one), so Ray adds none
    (ssh,) = [c for c in shell_commands(SETUP_SCRIPTS["aws"].read_text()) if "--cidr" in c]
    assert '--group-id "$SG_ID"' in ssh and "--port 22" in ssh and '"$W2S_SSH_CIDR"' in ssh


GCP_HEAD_SA = "w2s-ray-head@w2s-test-project.iam.gserviceaccount.com"
GCP_WORKER_SA = "w2s-ray-worker@w2s-test-project.iam.gserviceaccount.com"


def test_gcp_nodes_use_their_own_service_accounts() -> None:
    prepared = ray_validate(load_launcher("gcp"))
    for name, node_type in prepared["available_node_types"].items():
        (account,) = node_type["node_config"]["serviceAccounts"]
        assert account["email"] == (GCP_HEAD_SA if name == prepared["head_node_type"] else GCP_WORKER_SA), name
    text = LAUNCHERS["gcp"].read_text()
    assert "ray-autoscaler-sa-v1@" not in text and "-compute@developer" not in text


def test_gcp_setup_grants_the_narrowest_roles() -> None:
    commands = shell_commands(SETUP_SCRIPTS["gcp"].read_text())
    grants = [c for c in commands if "add-iam-policy-binding" in c]
    roles = {c: re.search(r"--role (\S+)", c).group(1) for c in grants}
    assert not {"roles/owner", "roles/editor", "roles/compute.admin"} & set(roles.values())
    project_level = [c for c in grants if c.startswith("gcloud projects ")]
    assert [roles[c] for c in project_level] == ["roles/compute.instanceAdmin.v1"]
    assert all('"serviceAccount:$HEAD_SA"' in c for c in project_level)
    (act_as,) = [c for c in grants if roles[c] == "roles/iam.serviceAccountUser"]
    assert act_as.startswith('gcloud iam service-accounts add-iam-policy-binding "$WORKER_SA"')
    assert '"serviceAccount:$HEAD_SA"' in act_as
    buckets = [c for c in grants if c.startswith("gcloud storage buckets ")]
    assert buckets and all('"gs://$W2S_BUCKET"' in c and roles[c] == "roles/storage.objectAdmin" for c in buckets)
    assert set(roles) == set(project_level) | {act_as} | set(buckets)


SPOT_LABELS = {"cloud.google.com/gke-spot": "true", "cloud.google.com/gke-preemptible": "true",
               "eks.amazonaws.com/capacityType": "SPOT", "karpenter.sh/capacity-type": "spot"}


def head_schedulable_on(pod: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether the head pod's required node affinity admits a node with these labels."""
    required = pod.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return all(labels.get(k) == v for k, v in pod.get("nodeSelector", {}).items())

    def matches(expr: dict[str, Any]) -> bool:
        value = labels.get(expr["key"])
        if expr["operator"] == "In":
            return value in expr["values"]
        if expr["operator"] == "NotIn":
            return value not in expr["values"]
        if expr["operator"] == "Exists":
            return value is not None
        if expr["operator"] == "DoesNotExist":
            return value is None
        raise AssertionError(expr)

    selector_ok = all(labels.get(k) == v for k, v in pod.get("nodeSelector", {}).items())
    return selector_ok and any(all(matches(e) for e in term.get("matchExpressions", []))
                               for term in required["nodeSelectorTerms"])


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_kuberay_head_is_pinned_to_on_demand_nodes(path: Path) -> None:
    (doc,) = load_docs(path)
    (spec,) = cluster_specs(doc)
    head = spec["headGroupSpec"]["template"]["spec"]
    assert head_schedulable_on(head, {"kubernetes.io/os": "linux"})
    for key, value in SPOT_LABELS.items():
        assert not head_schedulable_on(head, {key: value}), key
    assert not any("spot" in t.get("key", "") for t in head.get("tolerations", []))


def test_on_demand_check_catches_a_head_without_affinity() -> None:
    (doc,) = load_docs(RAYCLUSTER)
    head = doc["spec"]["headGroupSpec"]["template"]["spec"]
    head.pop("affinity")
    assert head_schedulable_on(head, {"cloud.google.com/gke-spot": "true"})


# --- the preset's per-worker resources fit the GPU nodes -----------------------------------------


def _gpu_nodes() -> Iterator[tuple[str, float, float]]:
    for name in LAUNCHERS:
        _, gpus = node_types(ray_validate(load_launcher(name)))
        for type_name, node_type in gpus.items():
            yield f"{name}:{type_name}", node_type["resources"]["CPU"], node_type["resources"]["GPU"]
    for path in (RAYCLUSTER, RAYJOB):
        for doc in load_docs(path):
            for spec in cluster_specs(doc):
                for group in spec["workerGroupSpecs"]:
                    pod = group["template"]["spec"]
                    if gpu_count(pod):
                        cpus = sum(float(c["resources"]["limits"]["cpu"]) for c in pod["containers"])
                        yield f"{path.name}:{group['groupName']}", cpus, gpu_count(pod)


def test_every_gpu_node_fits_one_paper_training_and_its_trial() -> None:
    from w2s_ray.search.driver import TRIAL_CPU
    from w2s_ray.search.presets import get_preset

    paper = get_preset("paper")
    nodes = list(_gpu_nodes())
    assert len(nodes) >= 6
    for name, cpus, gpus in nodes:
        # the trial's own process and one Train worker land on the same node (the head has 0 CPUs)
        assert cpus >= paper.cpus_per_worker + TRIAL_CPU, name
        assert gpus >= paper.gpus_per_worker, name


def test_rayjob_names_the_preset_and_the_data_source() -> None:
    (job,) = load_docs(RAYJOB)
    tokens = shlex.split(job["spec"]["entrypoint"])
    assert tokens[tokens.index("--preset") + 1] == "paper" and "--use-gpu" in tokens
    assert "--data-dir" not in tokens  # the hub; said in the comment above the entrypoint
    assert "Data: the Hugging Face hub" in RAYJOB.read_text()
