"""The cluster path: a Ray job with its own runtime env, an unreachable --address.

The job test submits to a real `ray start --head` with `--runtime-env-json` holding
MLFLOW_TRACKING_URI (a real MLflow server on PostgreSQL) and W2S_STORAGE, as clusters/README.md
tells users to; the search takes both from the job's environment (no --tracking-uri, no --storage).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

from tests.ray_cluster import LocalRay, tiny_space
from w2s_ray.errors import UserError
from w2s_ray.search import driver

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 60  # not a timing assertion: only keeps a regression from hanging the suite


# --- the job's runtime env is merged, not re-declared -----------------------------------------------


def test_driver_adds_only_what_the_job_does_not_set() -> None:
    ours = {"env_vars": {"MLFLOW_TRACKING_URI": "http://a:5000", "W2S_DATA_DIR": "/d",
                         "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "900"},
            "worker_process_setup_hook": "w2s_ray.search.worker_logs.quiet_worker_logs"}
    job = {"env_vars": {"MLFLOW_TRACKING_URI": "http://b:5000", "W2S_STORAGE": "s3://x"},
           "working_dir": ".", "worker_process_setup_hook": "mine.hook"}
    assert driver.missing_from_job(ours, job) == {
        "env_vars": {"W2S_DATA_DIR": "/d", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "900"}}
    assert driver.missing_from_job(ours, {}) == ours
    assert driver.missing_from_job({"env_vars": {"A": "1"}}, {"env_vars": {"A": "2"}}) == {}


def test_job_runtime_env_is_read_from_the_job_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    monkeypatch.delenv(RAY_JOB_CONFIG_JSON_ENV_VAR, raising=False)
    assert driver.job_runtime_env() == {}
    monkeypatch.setenv(RAY_JOB_CONFIG_JSON_ENV_VAR, json.dumps(
        {"runtime_env": {"env_vars": {"W2S_STORAGE": "s3://x"}}, "metadata": {}}))
    assert driver.job_runtime_env() == {"env_vars": {"W2S_STORAGE": "s3://x"}}


@pytest.fixture(scope="module")
def cluster():
    ray = LocalRay()
    ray.start_head(num_cpus=2)
    try:
        yield ray
    finally:
        ray.stop()


@pytest.mark.ray
@pytest.mark.mlflow_server
def test_job_submit_with_env_vars_tracks_to_the_jobs_mlflow_and_storage(cluster, tmp_path, data_dir,
                                                                         mlflow_postgres_server):
    """`ray job submit --runtime-env-json '{"env_vars": {MLFLOW_TRACKING_URI, W2S_STORAGE}}'` (README)."""
    import mlflow

    (tmp_path / "space.yaml").write_text(tiny_space(epochs=1))
    storage = tmp_path / "bucket"
    uri = mlflow_postgres_server.uri
    env = {"env_vars": {"MLFLOW_TRACKING_URI": uri, "W2S_STORAGE": str(storage)}}
    out = cluster.submit_job(
        "python", "-m", "w2s_ray.search", "--task", "sst2", "--preset", "tiny", "--space", str(tmp_path / "space.yaml"),
        "--num-samples", "2", "--name", "envjob", "--data-dir", data_dir, "--experiment", "w2s-envjob",
        runtime_env=env)
    assert "2/2 trials finished" in out, out[-3000:]
    assert "Failed to merge" not in out
    # W2S_STORAGE came from the job's env: results, checkpoints and the stage cache are there
    trials = pd.read_parquet(storage / "envjob" / "w2s" / "trials.parquet")
    assert len(trials) == 2 and (trials["final"] == 1).all()
    assert (storage / "cache" / "ledger.jsonl").exists()
    assert not (REPO / "w2s_runs" / "envjob").exists()

    # MLFLOW_TRACKING_URI came from the job's env: the search, its stages and trials are on the server
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("w2s-envjob")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("w2s.role") == "search"]
    assert parent.info.status == "FINISHED" and parent.data.tags.get("w2s.search_name") == "envjob"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trial_runs = [r for r in children if r.data.tags.get("w2s.role") == "trial"]
    assert len(trial_runs) == 2 and all(r.info.status == "FINISHED" for r in trial_runs)
    assert all("student_val_acc" in r.data.metrics for r in trial_runs)
    assert {r.data.tags["w2s.stage"] for r in children if r.data.tags.get("w2s.role") == "stage"} == {"weak", "ceiling"}


# --- an --address that does not answer -----------------------------------------------------------------


@pytest.mark.parametrize("address", ["h", "h:x", "h:0", ":6379", "http://h:8265", "::1"])
def test_malformed_address_is_a_user_error(address: str) -> None:
    with pytest.raises(UserError, match="--address"):
        driver.gcs_endpoint(address)


def test_address_forms() -> None:
    assert driver.gcs_endpoint("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert driver.gcs_endpoint("ray://head") == ("head", 10001)
    assert driver.gcs_endpoint("ray://head:10002") == ("head", 10002)
    assert driver.gcs_endpoint("[::1]:6379") == ("::1", 6379)
    assert driver.gcs_endpoint("auto") is None


def test_cli_with_an_address_nothing_listens_on_fails_in_one_line(tmp_path: Path, data_dir: str) -> None:
    (tmp_path / "space.yaml").write_text(tiny_space(epochs=1))
    cmd = [sys.executable, "-m", "w2s_ray.search", "--task", "sst2", "--preset", "tiny",
           "--space", str(tmp_path / "space.yaml"), "--storage", str(tmp_path / "runs"), "--data-dir", data_dir,
           "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--address", "127.0.0.1:1"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --address 127.0.0.1:1"), proc.stderr[-3000:]
    assert "no Ray cluster answers" in lines[0]
    assert not (tmp_path / "runs" / "sst2-tiny-s0").exists()


SILENT_GCS = textwrap.dedent(
    """\
    import sys, time, types
    from w2s_ray.errors import UserError
    from w2s_ray.search.driver import init_ray

    start = time.monotonic()
    try:
        init_ray(types.SimpleNamespace(args=types.SimpleNamespace(address=sys.argv[1])))
    except UserError as exc:
        print("USERERROR", exc)
    print("SECONDS", round(time.monotonic() - start, 1))
    """
)


def test_a_port_that_accepts_but_is_no_ray_gcs_gives_up(tmp_path: Path) -> None:
    """TCP connects, nothing answers: ray.init's own GCS wait is bounded (Ray's default retries for minutes)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(tmp_path)}
    for key in ("RAY_ADDRESS", *driver.GCS_CONNECT_BOUNDS):
        env.pop(key, None)
    try:
        proc = subprocess.run([sys.executable, "-c", SILENT_GCS, address], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=HANG_GUARD_S, check=False)
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"USERERROR --address {address}: no Ray cluster answered" in proc.stdout, proc.stdout + proc.stderr[-3000:]
