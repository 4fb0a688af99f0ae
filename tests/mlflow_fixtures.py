"""Fixtures that start a REAL `mlflow server` on localhost (sqlite and PostgreSQL backends).

Import them from tests/conftest.py (`from tests.mlflow_fixtures import *`). Servers are session-scoped
(startup takes ~10-20 s) and are killed by process group id at teardown.

PostgreSQL: a throwaway database `w2s_test_<random>` is created on 127.0.0.1:5432 (trust auth,
user postgres; override the admin DSN with $W2S_TEST_POSTGRES_DSN) and dropped afterwards. When
no PostgreSQL answers, the PostgreSQL fixtures skip with the reason -- except under CI=true,
where they fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "MlflowServer",
    "ToggleProxy",
    "free_port",
    "mlflow_postgres_server",
    "mlflow_server",
    "mlflow_sqlite_server",
    "postgres_database",
    "start_mlflow_server",
    "stop_process_group",
    "wait_healthy",
]

POSTGRES_ADMIN_DSN = os.environ.get(
    "W2S_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
)
SERVER_START_TIMEOUT_S = 180


@dataclasses.dataclass(frozen=True)
class MlflowServer:
    """A running tracking server: `uri` is its http URL; `backend` is "sqlite" or "postgres"."""

    uri: str
    backend: str
    backend_store_uri: str
    artifacts_dir: Path
    pid: int
    log_path: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(
    backend_store_uri: str,
    artifacts_dir: Path | None,
    log_path: Path,
    *,
    command: str = "server",
    timeout_s: float = SERVER_START_TIMEOUT_S,
) -> tuple[subprocess.Popen, str]:
    """Start `mlflow server` (or `mlflow ui`) in its own process group and wait for /health.

    With `artifacts_dir`, artifacts are proxied (`--serve-artifacts --artifacts-destination`).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", command, "--backend-store-uri", backend_store_uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if artifacts_dir is not None:
        cmd += ["--serve-artifacts", "--artifacts-destination", str(artifacts_dir)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(log_path, "wb")  # noqa: SIM115 (the server writes to it for its whole life)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    uri = f"http://127.0.0.1:{port}"
    wait_healthy(proc, uri, log_path, timeout_s)
    return proc, uri


def wait_healthy(proc: subprocess.Popen, uri: str, log_path: Path, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
    """Wait until `<uri>/health` answers 200; on exit or timeout, stop the process and raise with its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop_process_group(proc)  # its workers may still run in the group
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.5)
    stop_process_group(proc)
    raise RuntimeError(f"mlflow server not healthy after {timeout_s}s:\n{log_path.read_text()[-3000:]}")


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM the process group we started (server + its workers), then SIGKILL if needed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # stragglers (uvicorn workers) in the same group
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _server(tmp_path_factory: pytest.TempPathFactory, backend: str, backend_store_uri: str) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp(f"mlflow_{backend}")
    artifacts = root / "artifacts"
    artifacts.mkdir()
    log_path = root / "server.log"
    proc, uri = start_mlflow_server(backend_store_uri, artifacts, log_path)
    try:
        yield MlflowServer(uri, backend, backend_store_uri, artifacts, proc.pid, log_path)
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="session")
def mlflow_sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real tracking server with a sqlite backend in a temp dir."""
    db = tmp_path_factory.mktemp("mlflow_sqlite_db") / "mlflow.db"
    yield from _server(tmp_path_factory, "sqlite", f"sqlite:///{db}")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """SQLAlchemy URI of a throwaway PostgreSQL database, dropped at teardown."""
    psycopg2 = pytest.importorskip("psycopg2") if os.environ.get("CI") != "true" else __import__("psycopg2")
    try:
        admin = psycopg2.connect(POSTGRES_ADMIN_DSN)
    except psycopg2.OperationalError as exc:
        reason = f"no PostgreSQL answers at '{POSTGRES_ADMIN_DSN}': {str(exc).strip().splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires the PostgreSQL backend test)")
        # Justified skip: only outside CI (the MLflow issue allows it there), and it says why.
        pytest.skip(reason)
    admin.autocommit = True
    name = f"w2s_test_{secrets.token_hex(6)}"
    params = admin.get_dsn_parameters()
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        host, port, user = params.get("host", "127.0.0.1"), params.get("port", "5432"), params.get("user", "postgres")
        # explicit driver: SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3, which is not a dependency
        yield f"postgresql+psycopg2://{user}@{host}:{port}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def mlflow_postgres_server(tmp_path_factory: pytest.TempPathFactory, postgres_database: str) -> Iterator[MlflowServer]:
    """A real tracking server with a PostgreSQL backend (the production setup)."""
    yield from _server(tmp_path_factory, "postgres", postgres_database)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def mlflow_server(request: pytest.FixtureRequest) -> MlflowServer:
    """Parametrised over both backends: tests using it run once against each."""
    return request.getfixturevalue(f"mlflow_{request.param}_server")


class ToggleProxy:
    """A localhost TCP forwarder that can be switched off (connections refused) and on again.

    Point a client at `proxy.uri` to simulate a tracking server going down and coming back
    without restarting the real server.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Stop listening and cut every open connection (clients then get 'connection refused')."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    close = down

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
