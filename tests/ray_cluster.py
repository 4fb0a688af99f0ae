"""A private local Ray cluster for tests: own temp dir and ports, auth off, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def tiny_space(epochs: int = 1) -> str:
    """The small sst2 search space the Ray tests search (tiny preset): lr, xent vs logconf."""
    return f"""\
task: sst2
params:
  lr: {{type: float, low: 1.0e-4, high: 1.0e-3, log: true}}
  epochs: {{fixed: {epochs}}}
  loss: {{type: categorical, choices: [xent, logconf]}}
  aux_coef: {{type: float, low: 0.1, high: 1.0, when: {{loss: logconf}}}}
baseline:
  - {{loss: xent, lr: 5.0e-4}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports() -> list[str]:
    """Free ports for a node's agents, so no fixed default (e.g. the job agent's 52365) can clash
    with another Ray instance on the same machine, such as a user's own local search."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
            f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]


@dataclass
class LocalRay:
    """`ray start --head` (and optional extra nodes) that only ever kills its own processes."""

    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="w2sray-", dir="/tmp")))
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    env: dict = field(default_factory=dict)
    nodes: list["RayNode"] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def environ(self) -> dict:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", **self.env}
        env.pop("RAY_ADDRESS", None)
        return env

    def ray(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        exe = str(Path(sys.executable).with_name("ray"))
        return subprocess.run([exe, *args], env=self.environ(), capture_output=True, text=True, timeout=timeout,
                              check=check)

    def start_head(self, num_cpus: int = 2, num_gpus: int | None = None) -> None:
        """``num_gpus`` declares GPUs the machine need not have (Ray then schedules GPU requests on them)."""
        gpus = [f"--num-gpus={num_gpus}"] if num_gpus is not None else []
        self.ray("start", "--head", f"--port={self.gcs_port}", f"--num-cpus={num_cpus}", *gpus,
                 f"--temp-dir={self.temp_dir}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}",
                 *node_ports(), "--disable-usage-stats")

    def wait_for_job_agent(self, timeout: float = 120) -> None:
        """The job server answers before its agent is up; poll until a job can be listed."""
        import json
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.dashboard}/api/component_activities", timeout=5) as r:
                    json.loads(r.read())
                with urllib.request.urlopen(f"{self.dashboard}/api/jobs/", timeout=5) as r:
                    if r.status == 200:
                        time.sleep(5)  # the per-node agent registers shortly after the head answers
                        return
            except Exception:  # noqa: BLE001 - not ready yet
                time.sleep(2)
        raise TimeoutError("Ray job server did not come up")

    def submit_job(self, *entrypoint: str, runtime_env: dict | None = None, timeout: float = 1500,
                   attempts: int = 6) -> str:
        """`ray job submit` (optionally `--runtime-env-json`); waits, asserts the job succeeded, returns its output."""
        import json

        self.wait_for_job_agent()
        extra = ["--runtime-env-json", json.dumps(runtime_env)] if runtime_env is not None else []
        proc = self.ray("job", "submit", f"--address={self.dashboard}", *extra, "--", *entrypoint,
                        check=False, timeout=timeout)
        if proc.returncode != 0 and "No available agent" in proc.stderr and attempts > 1:  # still registering
            time.sleep(15)
            return self.submit_job(*entrypoint, runtime_env=runtime_env, timeout=timeout, attempts=attempts - 1)
        # the driver's own lines (actors' log lines start with "(ActorName pid=...)")
        driver = "\n".join(x for x in proc.stdout.splitlines() if not x.lstrip("\x1b[0-9;m").startswith("("))
        assert proc.returncode == 0, driver[-4000:] + proc.stderr[-2000:]
        job_id = next(line.split("'")[1] for line in proc.stdout.splitlines() if "submitted successfully" in line)
        status = self.ray("job", "status", f"--address={self.dashboard}", job_id).stdout
        assert "succeeded" in status.lower(), status
        return proc.stdout

    def add_node(self, num_cpus: int = 1, resources: str = "{}") -> "RayNode":
        """`ray start --address` a worker node on this machine, with its own short temp dir."""
        node = RayNode(Path(tempfile.mkdtemp(prefix="w2snode-", dir="/tmp")))
        self.nodes.append(node)
        self.ray("start", f"--address={self.address}", f"--num-cpus={num_cpus}", f"--resources={resources}",
                 f"--temp-dir={node.temp_dir}", *node_ports(), "--disable-usage-stats")
        return node

    def own_processes(self) -> list[psutil.Process]:
        mine = []
        needles = [str(self.temp_dir), *(str(n.temp_dir) for n in self.nodes)]
        for proc in psutil.process_iter(["cmdline"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
                if any(n in cmd for n in needles) or (f"{self.gcs_port}" in cmd and "ray" in cmd):
                    mine.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return mine

    def stop(self) -> None:
        procs = self.own_processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=3)  # then SIGKILL: a test cluster keeps no state
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.5)
        for path in [self.temp_dir, *(n.temp_dir for n in self.nodes)]:
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class RayNode:
    """A worker node started by `LocalRay.add_node`, known by its own temp dir."""

    temp_dir: Path

    def raylet(self) -> psutil.Process:
        """This node's raylet process (its command line names the node's temp dir)."""
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                cmd = proc.info["cmdline"] or []
                if cmd and Path(cmd[0]).name == "raylet" and any(str(self.temp_dir) in a for a in cmd):
                    return proc
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        raise LookupError(f"no raylet for the node in {self.temp_dir}")
