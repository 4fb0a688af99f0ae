"""Real faults injected at deterministic points into real runs (tiny models, real data).

Faults are armed with flag files in ``$W2S_FAULT_DIR`` (see ``w2s_ray.faults``): the first
process to reach an armed point consumes the flag and SIGKILLs itself (or raises, or hangs
until the test kills its node), so a retry or rerun proceeds. Ray tests use a private ``LocalRay``
cluster that the search driver joins with ``--address``, so killing the driver leaves the cluster up. The worker- and
driver-kill searches start from a cache that already holds the weak model and ceiling (trained
once, in-process), so their clusters train only the students the faults are about; the ledger
still counts every training.
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
import pytest

from tests.ray_cluster import LocalRay, tiny_space
from tests.search_plan import copy_shared_stages
from w2s_ray.faults import InjectedFault, arm, fired_path
from w2s_ray.pipeline.cache import COMPLETE, StageCache

REPO = Path(__file__).resolve().parents[1]
TRIALS = 2
# epochs fixed at 2, so "after epoch 1" is the middle of a student's training
SPACE = tiny_space(epochs=2)


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(autouse=True)
def disarm_after(fault_dir):
    """A fault that did not fire (a failed test) must not leak into the next test."""
    yield
    for flag in fault_dir.iterdir():
        flag.unlink()


@pytest.fixture(scope="module")
def cluster(fault_dir):
    # workers inherit the env of `ray start`; the driver also forwards W2S_FAULT_DIR via runtime_env
    ray = LocalRay(env={"W2S_FAULT_DIR": str(fault_dir), "HF_HUB_OFFLINE": "1"})
    ray.start_head(num_cpus=2)
    try:
        yield ray
    finally:
        ray.stop()


def _env(fault_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "W2S_FAULT_DIR": str(fault_dir),
           "PYTHONUNBUFFERED": "1", **extra}
    env.pop("RAY_ADDRESS", None)
    env.pop("W2S_CACHE_DIR", None)
    return env


def search_cmd(tmp: Path, data_dir: str, cluster: LocalRay, *extra: str) -> list[str]:
    """`python -m w2s_ray.search` joined to the test cluster (the driver is its own process)."""
    (tmp / "space.yaml").write_text(SPACE)
    return [sys.executable, "-m", "w2s_ray.search", "--task", "sst2", "--preset", "tiny",
            "--space", str(tmp / "space.yaml"), "--num-samples", str(TRIALS), "--storage", str(tmp / "runs"),
            "--name", "s", "--data-dir", data_dir, "--tracking-uri", f"sqlite:///{tmp}/mlflow.db",
            "--address", cluster.address, "--checkpoint-interval-s", "0", *extra]  # resumable every epoch


def search(tmp: Path, data_dir: str, cluster: LocalRay, fault_dir: Path, *extra: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(search_cmd(tmp, data_dir, cluster, *extra), cwd=REPO, env=_env(fault_dir, **(env or {})),
                          capture_output=True, text=True, timeout=900)


def _tail(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"


def trials_frame(tmp: Path) -> pd.DataFrame:
    return pd.read_parquet(tmp / "runs" / "s" / "w2s" / "trials.parquet")


def mlflow_runs(tmp: Path) -> tuple[list, list]:
    """(search parent runs, trial child runs) of the test's MLflow store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name("w2s-sst2")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    parents = [r for r in runs if r.data.tags.get("w2s.role") == "search"]
    children = [r for r in runs if r.data.tags.get("w2s.role") == "trial"]
    return parents, children


def assert_one_parent_one_child_per_trial(tmp: Path, trials: pd.DataFrame) -> None:
    parents, children = mlflow_runs(tmp)
    assert len(parents) == 1, [p.info.run_id for p in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert len(children) == len(trials), [(c.info.run_name, c.info.status) for c in children]
    assert {c.data.tags.get("mlflow.parentRunId") for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["w2s.trial_id"] for c in children) == sorted(trials["trial_id"])
    assert [c.info.status for c in children] == ["FINISHED"] * len(children)


@pytest.mark.ray
def test_killed_driver_resumes_without_retraining(cluster, fault_dir, tmp_path, data_dir, model_cache,
                                                  tiny_shared_stages):
    # TUNE_GLOBAL_CHECKPOINT_S=0: Tune saves its experiment state every step, so at the kill the
    # saved state deterministically shows the completed trial as still RUNNING (its completion,
    # handled in the same step, is never persisted): the harshest point to lose a driver.
    env = {"TUNE_GLOBAL_CHECKPOINT_S": "0"}
    copy_shared_stages(tiny_shared_stages, tmp_path / "runs")
    flag = arm(fault_dir, "driver.after_trials_1", "kill")
    first = search(tmp_path, data_dir, cluster, fault_dir, env=env)
    assert first.returncode == -signal.SIGKILL, _tail(first)
    assert not flag.exists()
    assert not (tmp_path / "runs" / "s" / "w2s" / "trials.parquet").exists()
    from ray.tune import ExperimentAnalysis

    saved = {t.trial_id: t.status for t in ExperimentAnalysis(str(tmp_path / "runs" / "s")).trials}
    assert saved and "TERMINATED" not in saved.values(), saved  # Tune never persisted the completion
    cache = StageCache(tmp_path / "runs" / "cache")
    before = cache.trainings()
    before_students = {t["key"] for t in before if t["stage"] == "student"}
    assert before_students, "the first trial's student should have been trained before the kill"

    second = search(tmp_path, data_dir, cluster, fault_dir, "--resume", env=env)
    assert second.returncode == 0, _tail(second)
    assert "resuming search" in second.stdout

    trials = trials_frame(tmp_path)
    assert len(trials) == TRIALS and (trials["final"] == 1).all()
    after = cache.trainings()
    assert after[: len(before)] == before
    counts = Counter((t["stage"], t["key"]) for t in after)
    # every training happened exactly once across both runs: shared stages and finished trials reused
    assert set(counts.values()) == {1}, counts
    assert Counter(stage for stage, _ in counts) == {"weak": 1, "ceiling": 1, "student": TRIALS}
    assert {k for s, k in counts if s == "student"} == set(trials["student_key"])
    assert before_students <= set(trials["student_key"])
    assert set(saved) <= set(trials["trial_id"])  # the interrupted trial was continued, not replaced
    # the resumed run trained only the students it had not trained before
    assert {t["key"] for t in after[len(before):]} == set(trials["student_key"]) - before_students

    assert_one_parent_one_child_per_trial(tmp_path, trials)


@pytest.mark.ray
def test_lost_worker_node_its_trial_is_rescheduled_on_the_head(cluster, fault_dir, tmp_path, data_dir,
                                                                model_cache, tiny_shared_stages):
    # Each Train worker takes 1.5 of a node's 2 CPUs, so two concurrent students run one per node.
    # The one on the doomed node hangs after its first checkpoint; then its raylet is SIGKILLed.
    # (the references come from the shared cache: the fault is about the students)
    copy_shared_stages(tiny_shared_stages, tmp_path / "runs")
    node = cluster.add_node(num_cpus=2, resources='{"w2s_doomed": 1}')
    flag = arm(fault_dir, "worker.student.after_epoch_1", "hang", only_on_node_with="w2s_doomed")
    cmd = search_cmd(tmp_path, data_dir, cluster, "--max-concurrent", "2", "--cpus-per-worker", "1.5")
    log = (tmp_path / "search.log").open("w+")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(fault_dir), stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        fired = fired_path(flag)
        while not fired.exists() and proc.poll() is None:  # wait on a condition: the fault fired
            time.sleep(0.5)
        assert fired.exists(), f"no student trained on the added node; rc={proc.poll()}"
        raylet = node.raylet()
        raylet.kill()
        raylet.wait(timeout=60)
        assert not raylet.is_running()
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    assert rc == 0, log.read()[-8000:]

    trials = trials_frame(tmp_path)
    assert len(trials) == TRIALS and (trials["final"] == 1).all()
    cache = StageCache(tmp_path / "runs" / "cache")
    students = {key: json.loads((cache.get("student", key) / "metrics.json").read_text())
                for key in trials["student_key"]}
    # the student lost with the node was retried elsewhere from its last checkpoint
    resumed = [m for m in students.values() if m["resumed_from_step"] > 0]
    assert len(resumed) == 1, {k: m["resumed_from_step"] for k, m in students.items()}
    assert resumed[0]["resumed_from_step"] == resumed[0]["history"][0]["step"]
    counts = Counter((t["stage"], t["key"]) for t in cache.trainings())
    assert set(counts.values()) == {1} and Counter(s for s, _ in counts) == {"weak": 1, "ceiling": 1, "student": TRIALS}
    assert_one_parent_one_child_per_trial(tmp_path, trials)


PIPELINE_ARGS = ["--task", "sst2", "--weak", "tiny-bert", "--strong", "tiny-bert", "--n-a", "32", "--n-b", "32",
                 "--n-val", "16", "--n-test", "16", "--epochs", "1", "--weak-epochs", "1", "--ceiling-epochs", "1",
                 "--seed", "0"]


def run_pipeline(tmp: Path, data_dir: str, fault_dir: Path, in_process: bool) -> int:
    """`python -m w2s_ray.run` (no Ray): weak, ceiling and student on tiny models; returns the exit code."""
    args = [*PIPELINE_ARGS, "--data-dir", data_dir, "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "run.json")]
    if in_process:
        from w2s_ray.run import main

        return main(args)
    proc = subprocess.run([sys.executable, "-m", "w2s_ray.run", *args], cwd=REPO, env=_env(fault_dir),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, -signal.SIGKILL), _tail(proc)
    return proc.returncode


@pytest.mark.parametrize("action", ["raise", "kill"])
def test_crash_before_publishing_a_shared_stage_leaves_no_entry(action, tmp_path, data_dir, model_cache,
                                                                 monkeypatch):
    fault_dir = tmp_path / "faults"
    monkeypatch.setenv("W2S_FAULT_DIR", str(fault_dir))
    flag = arm(fault_dir, "stage.ceiling.before_publish", action)
    if action == "raise":  # in-process: the exception escapes the stage
        with pytest.raises(InjectedFault, match=r"stage\.ceiling\.before_publish"):
            run_pipeline(tmp_path, data_dir, fault_dir, in_process=True)
    else:  # a separate process, SIGKILLed with its staging dir half-way to the cache
        assert run_pipeline(tmp_path, data_dir, fault_dir, in_process=False) == -signal.SIGKILL
    assert not flag.exists()
    cache = StageCache(tmp_path / "cache")
    assert [t["stage"] for t in cache.trainings()] == ["weak"]
    ceiling_dir = tmp_path / "cache" / "ceiling"
    leftovers = sorted(ceiling_dir.iterdir()) if ceiling_dir.exists() else []
    # no entry: nothing complete, nothing at a key's own path (only private, hidden staging dirs)
    assert not any((p / COMPLETE).exists() for p in leftovers)
    assert all(p.name.startswith(".") for p in leftovers), leftovers
    if action == "raise":  # the writer cleaned its staging dir on the way out
        assert leftovers == []

    assert run_pipeline(tmp_path, data_dir, fault_dir, in_process=action == "raise") == 0
    stages = json.loads((tmp_path / "run.json").read_text())["runs"][0]["stages"]
    # the weak stage was reused (trained once in total); the ceiling trained once, now
    assert [t["stage"] for t in cache.trainings()] == ["weak", "ceiling", "student"]
    assert cache.get("ceiling", stages["ceiling"]) is not None
    assert cache.get("weak", stages["weak"]) is not None
