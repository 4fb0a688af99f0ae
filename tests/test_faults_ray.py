"""Faults under Ray that the first fault tests left unproven: each asserts nothing lost, nothing duplicated.

One private ``LocalRay`` cluster serves the whole module; every search driver is its own process
that joins it (``--address``, and ``RAY_ADDRESS`` for anything it starts), so killing a driver
leaves the cluster up and another local Ray on the machine is never joined. Counting:

- trainings by the cache's ledger (``StageCache.trainings()``): every stage key exactly once
  over all runs of a search;
- MLflow runs by role: one parent search run, one FINISHED child run per trial of the result
  (plus, only in the between-saves test, one child run tagged ``w2s.orphan``).

``tiny-probe`` (probes fit in the trial's own process) serves where no Ray Train worker is the
point; ``tiny`` (fine-tuned under Ray Train) where one must exist.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.mlflow_fixtures import free_port, stop_process_group, wait_healthy
from tests.ray_cluster import LocalRay, RayNode, tiny_space
from tests.search_plan import copy_shared_stages
from w2s_ray.faults import arm, fired_path
from w2s_ray.pipeline.cache import StageCache

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 900  # generous: a hung search fails the test instead of the session
# the tiny preset with 2 reference epochs, so "after epoch 1" is the middle of the ceiling's training
TWO_REFERENCE_EPOCHS = (
    "import dataclasses, sys; from w2s_ray.search import presets as p; "
    "p.PRESETS['tiny'] = dataclasses.replace(p.PRESETS['tiny'], reference_epochs=2); "
    "from w2s_ray.search.__main__ import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults-ray")


@pytest.fixture(autouse=True)
def disarm_after(fault_dir):
    """A fault that did not fire (a failed test) must not leak into the next test."""
    yield
    for flag in fault_dir.iterdir():
        flag.unlink()


class PinnedRay(LocalRay):
    """A ``LocalRay`` whose every process has ``RAY_ADDRESS`` set to it: Ray Train V2's
    ``PlacementGroupCleaner`` calls ``ray.init()`` without an address, which beside another local
    Ray fails ("Found multiple active Ray instances") and leaks a lost controller's placement group."""

    def environ(self) -> dict:
        return {**super().environ(), "RAY_ADDRESS": self.address}


@pytest.fixture(scope="module")
def cluster(fault_dir):
    ray = PinnedRay(env={"W2S_FAULT_DIR": str(fault_dir), "HF_HUB_OFFLINE": "1"})
    ray.start_head(num_cpus=2)
    try:
        yield ray
    finally:
        ray.stop()


class Search:
    """One search (``--name s`` under ``tmp/runs``) run as separate driver processes on the test cluster."""

    def __init__(self, tmp: Path, data_dir: str, cluster: LocalRay, fault_dir: Path, preset: str, trials: int,
                 tracking_uri: str | None = None, launcher: str | None = None, env: dict[str, str] | None = None):
        self.tmp, self.preset, self.trials, self.launcher = tmp, preset, trials, launcher
        self.tracking_uri = tracking_uri or f"sqlite:///{tmp}/mlflow.db"
        (tmp / "space.yaml").write_text(tiny_space(epochs=2))
        self.args = ["--task", "sst2", "--preset", preset, "--space", str(tmp / "space.yaml"),
                     "--num-samples", str(trials), "--storage", str(tmp / "runs"), "--name", "s",
                     "--data-dir", data_dir, "--tracking-uri", self.tracking_uri, "--address", cluster.address,
                     "--checkpoint-interval-s", "0"]  # every epoch: the kills below resume from epoch 1
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    "W2S_FAULT_DIR": str(fault_dir), "RAY_ADDRESS": cluster.address, **(env or {})}
        self.env.pop("W2S_CACHE_DIR", None)
        self.env.pop("MLFLOW_TRACKING_URI", None)

    def cmd(self, *extra: str) -> list[str]:
        head = [sys.executable, "-c", self.launcher] if self.launcher else [sys.executable, "-m", "w2s_ray.search"]
        return [*head, *self.args, *extra]

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*extra), cwd=REPO, env=self.env, capture_output=True, text=True, check=False,
                              timeout=HANG_GUARD_S)

    def start(self, *extra: str) -> subprocess.Popen:
        log = (self.tmp / f"search-{time.monotonic_ns()}.log").open("w+")
        proc = subprocess.Popen(self.cmd(*extra), cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                text=True)
        proc.log = log  # type: ignore[attr-defined]
        return proc

    @property
    def exp(self) -> Path:
        return self.tmp / "runs" / "s"

    @property
    def cache(self) -> StageCache:
        return StageCache(self.tmp / "runs" / "cache")

    def trials_frame(self) -> pd.DataFrame:
        return pd.read_parquet(self.exp / "w2s" / "trials.parquet")

    def mlflow_runs(self) -> tuple[list, list]:
        """(search parent runs, trial child runs)."""
        import mlflow

        client = mlflow.MlflowClient(self.tracking_uri)
        exp = client.get_experiment_by_name("w2s-sst2")
        runs = client.search_runs([exp.experiment_id], max_results=500)
        return ([r for r in runs if r.data.tags.get("w2s.role") == "search"],
                [r for r in runs if r.data.tags.get("w2s.role") == "trial"])


def _tail(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"


def _log(proc: subprocess.Popen) -> str:
    proc.log.seek(0)  # type: ignore[attr-defined]
    return proc.log.read()[-8000:]  # type: ignore[attr-defined]


def wait_fired(flag: Path, proc: subprocess.Popen) -> dict:
    """Block until an armed ``hang``/``pause`` point fired (a condition, not a time); its pid and node."""
    fired = fired_path(flag)
    deadline = time.monotonic() + HANG_GUARD_S
    while not fired.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert fired.exists(), f"the fault never fired; rc={proc.poll()}\n{_log(proc)}"
    return json.loads(fired.read_text())


def finish(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def trained_once(search: Search) -> Counter:
    """Every stage key trained exactly once over every run of the search; counts per stage kind."""
    counts = Counter((t["stage"], t["key"]) for t in search.cache.trainings())
    assert counts and set(counts.values()) == {1}, counts
    students = {k for s, k in counts if s == "student"}
    assert students >= set(search.trials_frame()["student_key"])
    return Counter(stage for stage, _ in counts)


def one_parent_one_finished_child_per_trial(search: Search, orphans: int = 0) -> tuple:
    trials = search.trials_frame()
    assert len(trials) == search.trials and (trials["final"] == 1).all()
    parents, children = search.mlflow_runs()
    assert len(parents) == 1, [p.info.run_id for p in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags.get("mlflow.parentRunId") for c in children} == {parent.info.run_id}
    marked = [c for c in children if c.data.tags.get("w2s.orphan") == "true"]
    kept = [c for c in children if c not in marked]
    assert len(marked) == orphans, [(c.info.run_name, c.info.status) for c in marked]
    assert sorted(c.data.tags["w2s.trial_id"] for c in kept) == sorted(trials["trial_id"])
    assert [c.info.status for c in kept] == ["FINISHED"] * len(kept)
    return parent, kept, marked


def stage_metrics(search: Search, stage: str) -> dict:
    (key,) = [t["key"] for t in search.cache.trainings() if t["stage"] == stage]
    return json.loads((search.cache.get(stage, key) / "metrics.json").read_text())


# ----- Train workers killed: one during a shared stage, one during a trial's student -------------
@pytest.mark.ray
def test_killed_train_workers_resume_from_their_checkpoints(cluster, fault_dir, tmp_path, data_dir, model_cache):
    """One search, two faults: the ceiling's Train worker and then the student's Train worker are
    each SIGKILLed after their first epoch's checkpoint (each flag fires once)."""
    search = Search(tmp_path, data_dir, cluster, fault_dir, "tiny", trials=1, launcher=TWO_REFERENCE_EPOCHS)
    flags = [arm(fault_dir, "worker.ceiling.after_epoch_1", "kill"), arm(fault_dir, "worker.student.after_epoch_1",
                                                                         "kill")]
    proc = search.run()
    assert proc.returncode == 0, _tail(proc)
    assert not any(flag.exists() for flag in flags), "a fault never fired"

    ceiling = stage_metrics(search, "ceiling")
    assert len(ceiling["history"]) == 2  # 2 epochs: epoch 1 restored, epoch 2 trained after the restart
    assert ceiling["resumed_from_step"] == ceiling["history"][0]["step"] > 0
    assert stage_metrics(search, "weak")["resumed_from_step"] == 0
    assert ceiling["steps"] == stage_metrics(search, "weak")["steps"]  # same data and epochs: no step redone

    killed = stage_metrics(search, "student")
    # restored after epoch 1: the step counter continued from epoch 1's last step, not from 0
    assert killed["resumed_from_step"] == killed["history"][0]["step"] > 0
    assert killed["steps"] > killed["resumed_from_step"]
    assert len(killed["history"]) == 2  # epoch 1 (restored) + epoch 2, not 1 + 1 + 2
    # B is as large as A, and the student trains as many epochs as the uninterrupted weak model
    assert killed["steps"] == stage_metrics(search, "weak")["steps"]
    assert trained_once(search) == {"weak": 1, "ceiling": 1, "student": 1}
    one_parent_one_finished_child_per_trial(search)


# ----- a trial's own actor killed ----------------------------------------------------------------
def trial_actors(cluster: LocalRay) -> list[psutil.Process]:
    """This cluster's live Tune function-trial actors (children of its raylet titled ``ray::ImplicitFunc``)."""
    found = []
    for child in RayNode(cluster.temp_dir).raylet().children():
        try:
            if (child.cmdline() or [""])[0].startswith("ray::ImplicitFunc"):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.ray
def test_killed_trial_actor_is_retried_and_its_student_resumes(cluster, fault_dir, tmp_path, data_dir, model_cache,
                                                                tiny_shared_stages):
    # The student's Train worker pauses after its first checkpoint; then the trial's own actor
    # (which owns the Train controller and, through it, the worker) is SIGKILLed alone.
    search = Search(tmp_path, data_dir, cluster, fault_dir, "tiny", trials=1)
    copy_shared_stages(tiny_shared_stages, tmp_path / "runs")
    flag = arm(fault_dir, "worker.student.after_epoch_1", "hang")
    proc = search.start()
    worker = None
    try:
        worker = wait_fired(flag, proc)["pid"]
        (actor,) = trial_actors(cluster)
        actor.kill()
        actor.wait(timeout=60)
        rc = finish(proc)
    finally:
        if worker is not None and psutil.pid_exists(worker):  # the paused worker, if it outlived its owner
            os.kill(worker, signal.SIGKILL)
    assert rc == 0, _log(proc)

    student = stage_metrics(search, "student")
    assert student["resumed_from_step"] == student["history"][0]["step"] > 0  # continued from epoch 1
    assert len(student["history"]) == 2
    assert trained_once(search) == {"weak": 1, "ceiling": 1, "student": 1}
    _, (child,), _ = one_parent_one_finished_child_per_trial(search)
    assert child.data.tags.get("w2s.num_failures") == "1"  # Tune retried the same trial, under its own id


# ----- the driver killed during the shared stages -------------------------------------------------
@pytest.mark.ray
def test_driver_killed_during_shared_stages_resumes(cluster, fault_dir, tmp_path, data_dir, model_cache):
    search = Search(tmp_path, data_dir, cluster, fault_dir, "tiny-probe", trials=2)
    flag = arm(fault_dir, "driver.shared.after_weak", "kill")
    first = search.run()
    assert first.returncode == -signal.SIGKILL, _tail(first)
    assert not flag.exists()
    from ray import tune

    assert not tune.Tuner.can_restore(str(search.exp))  # Tune never started: only the search record exists
    assert json.loads((search.exp / "w2s" / "search_record.json").read_text())["name"] == "s"
    before = search.cache.trainings()
    assert {t["stage"] for t in before} >= {"weak"} and "ceiling" not in {t["stage"] for t in before}

    second = search.run("--resume")
    assert second.returncode == 0, _tail(second)
    assert "resuming search s" in second.stdout

    after = search.cache.trainings()
    assert after[: len(before)] == before  # the weak model (and its candidates) were not retrained
    assert not {t["stage"] for t in after[len(before):]} & {"weak"}
    counts = trained_once(search)
    assert counts["ceiling"] >= 1 and counts["student"] == 2
    parent, _, _ = one_parent_one_finished_child_per_trial(search)
    assert parent.data.tags.get("w2s.resume_count") == "1"  # found again by search name


# ----- the tracking server stopped mid-search, then its leftovers replayed by --resume ------------
def start_server(backend_uri: str, artifacts: Path, port: int, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--serve-artifacts", "--artifacts-destination", str(artifacts)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    wait_healthy(proc, f"http://127.0.0.1:{port}", log_path)
    return proc


@pytest.mark.ray
@pytest.mark.mlflow_server
def test_tracking_server_stopped_mid_search_is_replayed_on_resume(cluster, fault_dir, tmp_path, data_dir,
                                                                   model_cache):
    port, artifacts = free_port(), tmp_path / "mlartifacts"
    artifacts.mkdir()
    backend = f"sqlite:///{tmp_path}/server.db"
    server = start_server(backend, artifacts, port, tmp_path / "server.log")
    try:
        search = Search(tmp_path, data_dir, cluster, fault_dir, "tiny-probe", trials=2,
                        tracking_uri=f"http://127.0.0.1:{port}")
        flag = arm(fault_dir, "driver.after_trials_1", "pause")  # the first trial is complete and logged
        proc = search.start("--mlflow-flush-timeout-s", "2")  # give up on the dead server quickly
        wait_fired(flag, proc)
        stop_process_group(server)  # the real server process is gone for the rest of this run
        fired_path(flag).unlink()  # let the driver go on
        rc = finish(proc)
        out = _log(proc)
        assert rc == 0, out
        assert "some MLflow writes could not be made" in out
        unlogged = search.exp / "mlflow_unlogged.json"
        left = json.loads(unlogged.read_text())
        assert left["pending_counts"]["runs"] >= 1 and left["pending_counts"]["statuses"] >= 1, left
        assert not left["rejected"]

        server = start_server(backend, artifacts, port, tmp_path / "server.log")  # same store, same URI
        second = search.run("--resume")
        assert second.returncode == 0, _tail(second)
        assert not unlogged.exists()  # every leftover write was replayed
        assert trained_once(search)["student"] == 2  # the resume trained nothing
        one_parent_one_finished_child_per_trial(search)
    finally:
        stop_process_group(server)


# ----- the between-saves gap: a trial started and lost before Tune saved it ----------------------
@pytest.mark.ray
def test_trial_lost_between_state_saves_leaves_one_marked_orphan(cluster, fault_dir, tmp_path, data_dir,
                                                                  model_cache):
    # Tune saves its experiment state at its first step, then not again for an hour: the second
    # trial is created, started (its MLflow child run RUNNING) and lost with the driver, unsaved.
    search = Search(tmp_path, data_dir, cluster, fault_dir, "tiny-probe", trials=2,
                    env={"TUNE_GLOBAL_CHECKPOINT_S": "3600"})
    flag = arm(fault_dir, "driver.trial_started_2", "kill")
    first = search.run()
    assert first.returncode == -signal.SIGKILL, _tail(first)
    assert not flag.exists()
    from ray.tune import ExperimentAnalysis

    saved = {t.trial_id for t in ExperimentAnalysis(str(search.exp)).trials}
    _, children = search.mlflow_runs()
    lost = [c for c in children if c.data.tags["w2s.trial_id"] not in saved]
    assert len(lost) == 1 and lost[0].info.status == "RUNNING", saved  # the gap, deterministically
    before = search.cache.trainings()

    second = search.run("--resume")
    assert second.returncode == 0, _tail(second)
    after = search.cache.trainings()
    assert after[: len(before)] == before  # no finished training lost
    assert trained_once(search)["student"] >= 2  # each key once; the lost trial's student, if published, kept
    _, _, (orphan,) = one_parent_one_finished_child_per_trial(search, orphans=1)
    assert orphan.info.run_id == lost[0].info.run_id
    assert orphan.info.status == "KILLED"
    assert orphan.data.tags["w2s.trial_id"] not in set(search.trials_frame()["trial_id"])
