"""The cluster path: a Ray job with its own runtime env, an unreachable --address.

The merge rule for the job's runtime env is unit-tested here; the job submit itself, with
`--runtime-env-json` holding MLFLOW_TRACKING_URI (a real MLflow server on PostgreSQL) and
W2S_STORAGE as clusters/README.md tells users to, runs in tests/test_search_ray.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.ray_cluster import tiny_space
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


# The job submit with MLFLOW_TRACKING_URI and W2S_STORAGE in --runtime-env-json runs on a real
# cluster and a real MLflow server on PostgreSQL in tests/test_search_ray.py
# (test_job_submit_asha_search_tracked_on_a_postgres_mlflow_server), sharing that module's cluster.


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
        init_ray(types.SimpleNamespace(settings=types.SimpleNamespace(address=sys.argv[1])))
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
