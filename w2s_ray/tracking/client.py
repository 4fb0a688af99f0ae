"""A buffered, retrying MLflow writer that never raises into Tune and never silently drops data.

Every write is an operation (a small JSON-able dict) applied in order. If the tracking backend is
unreachable, the operation and everything after it wait in a bounded queue and are retried on later
calls with exponential backoff. `flush()` tries once more and reports what is still pending; those
operations are written to `mlflow_unlogged.json` (next to the search's storage), and a later client
on the same tracking URI replays them. Runs can be created while the server is down: `ensure_run`
then returns a placeholder handle that later operations may use; it is resolved on replay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from w2s_ray.remote import is_remote
from w2s_ray.tracking.uri import is_server_uri, redact
from w2s_ray.tracking.values import MAX_TAG_VALUE_LENGTH

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

UNLOGGED_FILENAME = "mlflow_unlogged.json"
PENDING_PREFIX = "pending-run:"
_BATCH_METRICS = 1000  # MLflow's per-request limits
_BATCH_PARAMS_TAGS = 100
_PERMANENT_CODES = frozenset({
    "INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE",
    "BAD_REQUEST", "MALFORMED_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED", "ENDPOINT_NOT_FOUND",
    "NOT_FOUND", "ALREADY_EXISTS", "FEATURE_DISABLED",
})
_env_lock = threading.RLock()


@dataclasses.dataclass(frozen=True)
class LogReport:
    """What a flush could not log. `ok` is True when nothing is pending or rejected."""

    pending: dict[str, int]
    rejected: dict[str, int]
    path: str | None

    @property
    def ok(self) -> bool:
        return not any(self.pending.values()) and not any(self.rejected.values())

    def summary(self) -> str:
        if self.ok:
            return "MLflow: everything was logged"
        parts = []
        for label, counts in (("not yet logged (server unreachable)", self.pending), ("rejected", self.rejected)):
            items = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
            if items:
                parts.append(f"{label}: {items}")
        where = f"; details in {self.path}" if self.path else ""
        return "MLflow: " + "; ".join(parts) + where


class BufferedClient:
    """Ordered, buffered MLflow writes. Thread-safe; one instance per (URI, unlogged file) via `shared`."""

    _instances: ClassVar[dict[tuple[str, str], "BufferedClient"]] = {}
    _instances_lock = threading.Lock()

    def __init__(
        self,
        tracking_uri: str,
        unlogged_path: str | Path | None = None,
        *,
        max_pending_ops: int = 20_000,
        http_timeout_s: int = 10,
        http_max_retries: int = 0,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.unlogged_path = str(unlogged_path) if unlogged_path else None
        self.max_pending_ops = max_pending_ops
        self._http_env = {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(http_max_retries),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(http_timeout_s)),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
        }
        self._min_backoff, self._max_backoff = min_backoff_s, max_backoff_s
        self._backoff = min_backoff_s
        self._next_try = 0.0
        self._queue: deque[dict[str, Any]] = deque()
        self._rejected: list[dict[str, Any]] = []
        self._resolved: dict[str, str] = {}
        self._lock = threading.RLock()
        self._mlflow: MlflowClient | None = None  # made on first use
        self._down_since: float | None = None
        self._last_persist = 0.0
        self._file_written = False
        self._load_unlogged()

    @classmethod
    def shared(cls, tracking_uri: str, unlogged_path: str | Path | None = None) -> "BufferedClient":
        """The process-wide client for this URI and unlogged file (so driver-side users share one queue)."""
        key = (tracking_uri, str(unlogged_path or ""))
        with cls._instances_lock:
            if key not in cls._instances:
                cls._instances[key] = cls(tracking_uri, unlogged_path)
            return cls._instances[key]

    @classmethod
    def forget_shared(cls) -> None:
        """Drop the process-wide instances (as a fresh driver process would start; for tests)."""
        with cls._instances_lock:
            cls._instances.clear()

    # ----- direct access (raises) -------------------------------------------------------------
    @property
    def mlflow(self) -> MlflowClient:
        """The underlying `MlflowClient`, for reads. Wrap calls in `short_http()` for fast failure."""
        if self._mlflow is None:
            from mlflow import MlflowClient

            self._mlflow = MlflowClient(tracking_uri=self.tracking_uri)
        return self._mlflow

    @contextlib.contextmanager
    def short_http(self) -> Iterator[None]:
        """Make MLflow's own HTTP retries short inside this block (a down server must not hang Tune)."""
        if not is_server_uri(self.tracking_uri):
            yield
            return
        with _env_lock:
            saved = {k: os.environ.get(k) for k in self._http_env}
            os.environ.update(self._http_env)
            try:
                yield
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v

    # ----- buffered writes (never raise) ------------------------------------------------------
    def ensure_run(
        self,
        experiment_id: str,
        match_tags: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
    ) -> str:
        """Get-or-create the active run whose tags include `match_tags`; return its id (or a handle).

        Match values must be plain tokens (letters, digits, `_-.:`), e.g. ids or hashes.
        """
        for key, value in match_tags.items():
            if not is_token(str(value)):
                raise ValueError(f"match tag {key}={value!r} must be a plain token (use a hash)")
        handle = PENDING_PREFIX + uuid.uuid4().hex
        op = {
            "op": "ensure_run", "handle": handle, "experiment_id": str(experiment_id),
            "match": dict(match_tags), "tags": {**(tags or {}), **match_tags}, "run_name": run_name,
        }
        self._submit(op)
        return self._resolved.get(handle, handle)

    def log_batch(
        self,
        run: str,
        metrics: Mapping[str, float] | None = None,
        *,
        step: int = 0,
        timestamp_ms: int | None = None,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Log metrics (one step), params and tags in as few requests as MLflow's limits allow."""
        ts = int(timestamp_ms if timestamp_ms is not None else time.time() * 1000)
        m = [[k, float(v), ts, int(step)] for k, v in (metrics or {}).items()]
        p = [[k, str(v)] for k, v in (params or {}).items()]
        t = [[k, str(v)[:MAX_TAG_VALUE_LENGTH]] for k, v in (tags or {}).items()]
        ok = True
        while m or p or t:
            chunk = {"op": "log_batch", "run": run, "metrics": m[:_BATCH_METRICS],
                     "params": p[:_BATCH_PARAMS_TAGS], "tags": t[:_BATCH_PARAMS_TAGS]}
            m, p, t = m[_BATCH_METRICS:], p[_BATCH_PARAMS_TAGS:], t[_BATCH_PARAMS_TAGS:]
            ok = self._submit(chunk) and ok
        return ok

    def set_tags(self, run: str, tags: Mapping[str, Any]) -> bool:
        return self.log_batch(run, tags={k: str(v) for k, v in tags.items()})

    def delete_tag(self, run: str, key: str) -> bool:
        return self._submit({"op": "delete_tag", "run": run, "key": key})

    def log_artifact(
        self,
        run: str,
        local_path: str | Path,
        artifact_path: str | None = None,
        *,
        remove_after: str | Path | None = None,
    ) -> bool:
        """Upload a file or a directory (its contents go under `artifact_path`).

        `remove_after`: a temporary directory to delete once the upload succeeded.
        """
        return self._submit({"op": "log_artifact", "run": run, "local_path": str(local_path),
                             "artifact_path": artifact_path,
                             "remove_after": str(remove_after) if remove_after else None})

    def set_status(self, run: str, status: str) -> bool:
        """RUNNING reopens a run; FINISHED/FAILED/KILLED terminate it."""
        return self._submit({"op": "set_status", "run": run, "status": status})

    def resolve(self, run: str) -> str | None:
        """The real run id for an id or handle; None while the handle's run is not created yet."""
        return self._resolved.get(run) if run.startswith(PENDING_PREFIX) else run

    def knows(self, run: str) -> bool:
        """False for a handle from another process that this client cannot resolve."""
        if not run.startswith(PENDING_PREFIX) or run in self._resolved:
            return True
        with self._lock:
            return any(op.get("handle") == run for op in self._queue)

    def report(self) -> LogReport:
        with self._lock:
            return LogReport(_count(self._queue), _count(self._rejected), self.unlogged_path)

    def flush(self, timeout_s: float = 30.0) -> LogReport:
        """Retry pending writes for up to `timeout_s`, then record what is left and report it."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._queue:
                self._next_try = 0.0
                self._drain()
                left = deadline - time.monotonic()
                if not self._queue or left <= 0:
                    break
                time.sleep(min(self._backoff, left))
            self._persist(force=True)
            report = self.report()
        if report.ok:
            log.debug("MLflow flush: all writes logged")
        else:
            log.warning(report.summary())
        return report

    # ----- internals ----------------------------------------------------------------------------
    def _submit(self, op: dict[str, Any]) -> bool:
        try:
            with self._lock:
                if len(self._queue) >= self.max_pending_ops:
                    self._reject(op, "MLflow write buffer full while the server was unreachable")
                    return False
                self._queue.append(op)
                self._drain()
                return not self._queue or self._queue[-1] is not op
        except Exception:  # never raise into Tune
            log.exception("unexpected error while buffering an MLflow write")
            return False

    def _drain(self) -> None:
        if not self._queue or time.monotonic() < self._next_try:
            if self._queue:
                self._persist()
            return
        done = 0
        while self._queue:
            op = self._queue[0]
            try:
                with self.short_http():
                    self._apply(op)
            except Exception as exc:  # noqa: BLE001 (classified below)
                if _is_transient(exc):
                    self._backoff_after(exc)
                    break
                self._queue.popleft()
                self._reject(op, _one_line(exc))
                continue
            self._queue.popleft()
            done += 1
        if not self._queue:
            if self._down_since is not None:
                log.warning("MLflow reachable again at %s; logged %d buffered writes", redact(self.tracking_uri), done)
            self._down_since = None
            self._backoff, self._next_try = self._min_backoff, 0.0
        self._persist()

    def _backoff_after(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "MLflow at %s unreachable (%s); buffering writes and retrying with backoff",
                redact(self.tracking_uri), _one_line(exc),
            )
        else:
            self._backoff = min(self._backoff * 2, self._max_backoff)
        self._next_try = now + self._backoff

    def _reject(self, op: dict[str, Any], reason: str) -> None:
        log.warning("MLflow rejected a %s write (%s); recorded in %s", op["op"], reason, self.unlogged_path)
        self._rejected.append({**op, "error": reason})

    def _run_id(self, ref: str) -> str:
        run_id = self.resolve(ref)
        if run_id is None:  # its ensure_run op was rejected, so the run will never exist
            raise LookupError(f"run {ref} could not be created")
        return run_id

    def _apply(self, op: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        kind = op["op"]
        client = self.mlflow
        if kind == "ensure_run":
            self._resolved[op["handle"]] = self._get_or_create(op)
        elif kind == "log_batch":
            client.log_batch(
                self._run_id(op["run"]),
                metrics=[Metric(k, v, ts, step) for k, v, ts, step in op["metrics"]],
                params=[Param(k, v) for k, v in op["params"]],
                tags=[RunTag(k, v) for k, v in op["tags"]],
            )
        elif kind == "delete_tag":
            run_id = self._run_id(op["run"])
            if op["key"] in client.get_run(run_id).data.tags:
                client.delete_tag(run_id, op["key"])
        elif kind == "log_artifact":
            path = Path(op["local_path"])
            if path.is_dir():
                client.log_artifacts(self._run_id(op["run"]), str(path), op["artifact_path"])
            elif path.is_file():
                client.log_artifact(self._run_id(op["run"]), str(path), op["artifact_path"])
            else:
                raise FileNotFoundError(f"artifact {path} no longer exists")
            if op.get("remove_after"):
                shutil.rmtree(op["remove_after"], ignore_errors=True)
        elif kind == "set_status":
            run_id = self._run_id(op["run"])
            if op["status"] == "RUNNING":
                client.update_run(run_id, status="RUNNING")
            else:
                client.set_terminated(run_id, status=op["status"])
        else:
            raise ValueError(f"unknown MLflow op {kind!r}")

    def get_or_create_run(
        self,
        experiment_id: str,
        match_tags: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
    ) -> tuple[str, bool]:
        """Direct (raising) get-or-create: (run id, created?). Use inside `short_http()`."""
        from mlflow.entities import ViewType

        flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in match_tags.items())
        found = self.mlflow.search_runs(
            [str(experiment_id)], filter_string=flt, run_view_type=ViewType.ACTIVE_ONLY,
            max_results=2, order_by=["attributes.start_time ASC"],
        )
        if found:
            if len(found) > 1:
                log.warning("several MLflow runs match %s; using the oldest %s", dict(match_tags), found[0].info.run_id)
            return found[0].info.run_id, False
        all_tags = {**(tags or {}), **match_tags}
        run = self.mlflow.create_run(str(experiment_id), tags=all_tags, run_name=run_name)
        return run.info.run_id, True

    def _get_or_create(self, op: dict[str, Any]) -> str:
        tags = {k: self._resolved.get(v, v) for k, v in op["tags"].items()}  # e.g. a pending stage run
        match = {k: tags[k] for k in op["match"]}
        if any(v.startswith(PENDING_PREFIX) for v in match.values()):
            raise LookupError(f"run {op['match']} refers to a run that could not be created")
        unresolved = [k for k, v in tags.items() if v.startswith(PENDING_PREFIX)]
        if unresolved:  # a link to a run that was never created: keep the run, drop the link
            log.warning("dropping links %s to runs that could not be created", unresolved)
            tags = {k: v for k, v in tags.items() if k not in unresolved}
        return self.get_or_create_run(op["experiment_id"], match, tags, op["run_name"])[0]

    def _persist(self, force: bool = False) -> None:
        """Write pending + rejected ops to the unlogged file (throttled), or remove it when all logged."""
        if not self.unlogged_path:
            return
        now = time.monotonic()
        if not force and now - self._last_persist < 5.0:
            return
        self._last_persist = now
        try:
            if not self._queue and not self._rejected:
                if self._file_written:
                    _remove(self.unlogged_path)
                    self._file_written = False
                return
            doc = {
                "tracking_uri": redact(self.tracking_uri),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "pending_counts": _count(self._queue),
                "rejected_counts": _count(self._rejected),
                "pending": list(self._queue),
                "rejected": self._rejected,
                "resolved_runs": self._resolved,
            }
            _write_text(self.unlogged_path, json.dumps(doc, indent=1))
            self._file_written = True
        except Exception:  # noqa: BLE001 (best effort; the in-memory queue still holds everything)
            log.exception("could not write %s", self.unlogged_path)

    def _load_unlogged(self) -> None:
        """Replay what a previous client on this URI could not log (e.g. before a driver restart)."""
        if not self.unlogged_path:
            return
        try:
            text = _read_text(self.unlogged_path)
        except FileNotFoundError:
            return
        except Exception:  # noqa: BLE001
            log.exception("could not read %s", self.unlogged_path)
            return
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            log.warning("ignoring unreadable %s", self.unlogged_path)
            return
        self._rejected = list(doc.get("rejected", []))
        if doc.get("tracking_uri") == redact(self.tracking_uri):
            self._queue.extend(doc.get("pending", []))
            self._resolved.update(doc.get("resolved_runs", {}))
            if self._queue:
                log.warning("replaying %d MLflow writes left over in %s", len(self._queue), self.unlogged_path)
        else:
            self._rejected.extend({**op, "error": "left over for another tracking URI"}
                                  for op in doc.get("pending", []))
        self._file_written = True

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("BufferedClient is process-local; pickle its tracking_uri and unlogged_path instead")


def is_token(value: str) -> bool:
    """True for values safe inside a search filter: letters, digits, `_-.:` (ids, hashes)."""
    return bool(value) and all(c.isalnum() or c in "_-.:" for c in value)


def _is_transient(exc: Exception) -> bool:
    """Connection trouble and server-side 5xx are retried; bad requests and missing files are not."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (FileNotFoundError, LookupError, TypeError, ValueError, AttributeError, KeyError)):
        return False
    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT_CODES
    response = getattr(exc, "response", None)  # requests.HTTPError from artifact uploads
    status = getattr(response, "status_code", None)
    if status is not None:
        return status >= 500 or status in (408, 429)
    return True


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _count(ops: Any) -> dict[str, int]:
    counts = {"runs": 0, "metrics": 0, "params": 0, "tags": 0, "artifacts": 0, "statuses": 0}
    for op in ops:
        kind = op["op"]
        if kind == "ensure_run":
            counts["runs"] += 1
        elif kind == "log_batch":
            counts["metrics"] += len(op["metrics"])
            counts["params"] += len(op["params"])
            counts["tags"] += len(op["tags"])
        elif kind == "log_artifact":
            counts["artifacts"] += 1
        elif kind == "set_status":
            counts["statuses"] += 1
        elif kind == "delete_tag":
            counts["tags"] += 1
    return counts


def _local(path: str) -> Path:
    return Path(path[len("file://"):] if path.startswith("file://") else path)


def _write_text(path: str, text: str) -> None:
    if is_remote(path):
        import pyarrow.fs

        fs, fs_path = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_output_stream(fs_path) as f:
            f.write(text.encode())
        return
    local = _local(path)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, local)


def _read_text(path: str) -> str:
    if is_remote(path):
        import pyarrow.fs

        fs, fs_path = pyarrow.fs.FileSystem.from_uri(path)
        if fs.get_file_info(fs_path).type == pyarrow.fs.FileType.NotFound:
            raise FileNotFoundError(path)
        with fs.open_input_stream(fs_path) as f:
            return f.read().decode()
    return _local(path).read_text()


def _remove(path: str) -> None:
    if is_remote(path):
        import pyarrow.fs

        fs, fs_path = pyarrow.fs.FileSystem.from_uri(path)
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.delete_file(fs_path)
        return
    _local(path).unlink(missing_ok=True)
