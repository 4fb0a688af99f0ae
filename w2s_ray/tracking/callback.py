"""Ray Tune callback: one MLflow child run per trial, nested under the search's parent run.

Unlike Ray's `MLflowLoggerCallback`, runs are get-or-created by trial id (so `Tuner.restore`
continues them), nested (`mlflow.parentRunId`), logged in batches, linked to the shared-stage
runs, and all writes are buffered so an unreachable tracking server never fails a trial.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from w2s_ray.errors import unknown_name
from w2s_ray.pipeline.stage_pointer import read_pointer
from w2s_ray.tracking.client import BufferedClient
from w2s_ray.tracking.search_run import ROLE_TRIAL
from w2s_ray.tracking.values import split_metrics, to_params

if TYPE_CHECKING:
    from ray.train import Checkpoint  # ray.tune's Checkpoint subclasses it
    from ray.tune.experiment import Trial

log = logging.getLogger(__name__)

CHECKPOINT_MODES = {
    "all": "every checkpoint a trial reports",
    "best": "the trial's best checkpoint (by CheckpointConfig's score, else its latest) when it ends",
    "none": "no checkpoints",
}
# A checkpoint holding a stage pointer (``stage.json``, as a search's students report) is logged as
# that pointer plus a ``w2s.checkpoint_uri`` tag: the weights themselves stay in the stage cache.
CHECKPOINT_ARTIFACT_DIR = "checkpoints"
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failure|Warning))\b(: .*)?$")


class MLflowTrialCallback(Callback):
    """Logs each trial to an MLflow child run (params, per-iteration metrics, checkpoints, status).

    Args:
        tracking_uri: MLflow tracking URI (the driver writes; workers need no access).
        experiment_id: the search's experiment.
        parent_run_id: the search's parent run (`SearchTracker.parent_run_id`).
        stage_run_ids: stage name -> run id, linked from every trial as `w2s.stage_run.<stage>`.
        checkpoints: "all", "best" or "none" (see `CHECKPOINT_MODES`).
        unlogged_path: where writes that could not be logged are recorded (shared with the tracker).
        flush_timeout_s: how long `on_experiment_end` keeps retrying buffered writes.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        stage_run_ids: dict[str, str] | None = None,
        checkpoints: str = "best",
        *,
        unlogged_path: str | None = None,
        flush_timeout_s: float = 30.0,
    ) -> None:
        if checkpoints not in CHECKPOINT_MODES:
            raise unknown_name("checkpoint mode", checkpoints, CHECKPOINT_MODES)
        self.tracking_uri = tracking_uri
        self.experiment_id = str(experiment_id)
        self.parent_run_id = parent_run_id
        self.stage_run_ids = dict(stage_run_ids or {})
        self.checkpoints = checkpoints
        self.unlogged_path = unlogged_path
        self.flush_timeout_s = flush_timeout_s
        self._runs: dict[str, str] = {}  # trial id -> run id (or pending handle)
        self._logged_checkpoints: dict[str, list[str]] = {}
        self._errored: set[str] = set()  # trials whose run carries a `w2s.error` tag
        self._client: BufferedClient | None = None

    # Tune pickles callbacks into the experiment state (tuner.pkl): keep only plain data.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    @property
    def client(self) -> BufferedClient:
        if self._client is None:
            self._client = BufferedClient.shared(self.tracking_uri, self.unlogged_path)
        return self._client

    def run_id(self, trial_id: str) -> str | None:
        """The MLflow run id of a trial (None if not created yet)."""
        ref = self._runs.get(trial_id)
        return self.client.resolve(ref) if ref else None

    # ----- Tune hooks (none may raise: Tune would fail the search) -----------------------------
    def on_trial_start(self, iteration: int, trials: list["Trial"], trial: "Trial", **info: Any) -> None:
        self._guard(self._start, trial)

    def on_trial_restore(self, iteration: int, trials: list["Trial"], trial: "Trial", **info: Any) -> None:
        self._guard(self._tag_status, trial)

    def on_trial_result(self, iteration: int, trials: list["Trial"], trial: "Trial", result: dict, **info: Any) -> None:
        self._guard(self._result, trial, result)

    def on_checkpoint(self, iteration: int, trials: list["Trial"], trial: "Trial", checkpoint: "Checkpoint",
                      **info: Any) -> None:
        if self.checkpoints == "all":
            self._guard(self._log_checkpoint, trial, checkpoint)

    def on_trial_recover(self, iteration: int, trials: list["Trial"], trial: "Trial", **info: Any) -> None:
        self._guard(self._recover, trial)

    def on_trial_complete(self, iteration: int, trials: list["Trial"], trial: "Trial", **info: Any) -> None:
        self._guard(self._end, trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list["Trial"], trial: "Trial", **info: Any) -> None:
        self._guard(self._end, trial, "FAILED")

    def on_experiment_end(self, trials: list["Trial"], **info: Any) -> None:
        self._guard(self.client.flush, self.flush_timeout_s)

    def get_state(self) -> dict[str, Any]:
        runs = {tid: self.client.resolve(ref) or ref for tid, ref in self._runs.items()}
        return {
            "runs": runs,
            "logged_checkpoints": {k: list(v) for k, v in self._logged_checkpoints.items()},
            "errored": sorted(self._errored),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._runs.update(state.get("runs", {}))
        for tid, names in state.get("logged_checkpoints", {}).items():
            done = self._logged_checkpoints.setdefault(tid, [])
            done.extend(n for n in names if n not in done)
        self._errored.update(state.get("errored", []))

    # ----- implementation ----------------------------------------------------------------------
    def _guard(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 (MLflow logging must never fail a trial or the search)
            log.exception("MLflow callback %s failed; continuing", getattr(fn, "__name__", fn))

    def _run(self, trial: "Trial") -> str:
        ref = self._runs.get(trial.trial_id)
        if ref is not None and self.client.knows(ref):
            return ref
        tags = {"w2s.role": ROLE_TRIAL, "w2s.trial_name": str(trial),
                "w2s.trial_tag": str(getattr(trial, "experiment_tag", "") or "")}
        tags.update({f"w2s.stage_run.{stage}": run for stage, run in self.stage_run_ids.items()})
        ref = self.client.ensure_run(
            self.experiment_id,
            {"w2s.trial_id": trial.trial_id, "mlflow.parentRunId": self.parent_run_id},
            tags=tags,
            run_name=trial.trial_id,
        )
        self._runs[trial.trial_id] = ref
        return ref

    def _start(self, trial: "Trial") -> None:
        run = self._run(trial)
        self.client.set_status(run, "RUNNING")
        self.client.log_batch(run, params=to_params(trial.config), tags=self._status_tags(trial))

    def _tag_status(self, trial: "Trial") -> None:
        self.client.set_tags(self._run(trial), self._status_tags(trial))

    def _result(self, trial: "Trial", result: dict) -> None:
        metrics, nonfinite = split_metrics(result)
        step = int(result.get("training_iteration") or 0)
        ts = result.get("timestamp")
        self.client.log_batch(
            self._run(trial), metrics, step=step, timestamp_ms=int(ts * 1000) if isinstance(ts, (int, float)) else None,
            tags=nonfinite,
        )

    def _recover(self, trial: "Trial") -> None:
        """The trial failed but will be retried (e.g. its worker died): note it, keep RUNNING."""
        first, _ = _error_text(trial)
        self.client.set_tags(self._run(trial), {
            **self._status_tags(trial), "w2s.num_failures": trial.run_metadata.num_failures,
            "w2s.last_error": first or "unknown error",
        })

    def _end(self, trial: "Trial", status: str) -> None:
        run = self._run(trial)
        tags = self._status_tags(trial, "ERROR" if status == "FAILED" else "TERMINATED")
        if status == "FAILED":
            first, full = _error_text(trial)
            tags["w2s.error"] = first or "unknown error"
            tags["w2s.num_failures"] = str(trial.run_metadata.num_failures)
            if full:
                err_dir = Path(tempfile.mkdtemp(prefix="w2s_err_"))
                (err_dir / "error.txt").write_text(full)
                self.client.log_artifact(run, err_dir / "error.txt", remove_after=err_dir)
            self._errored.add(trial.trial_id)
        elif not (trial.last_result or {}).get("final"):
            tags["w2s.stopped_early"] = "true"  # e.g. by ASHA: told to Optuna as PRUNED, no final metrics
        if status != "FAILED" and trial.trial_id in self._errored:  # a restarted trial that now succeeded
            self.client.delete_tag(run, "w2s.error")
            self._errored.discard(trial.trial_id)
        if self.checkpoints == "best":
            best = trial.run_metadata.checkpoint_manager.best_checkpoint_result  # type: ignore[union-attr]  # set at start
            checkpoint = best.checkpoint if best else trial.checkpoint
            if checkpoint is not None:
                self._log_checkpoint(trial, checkpoint)
        self.client.set_tags(run, tags)
        self.client.set_status(run, status)

    def _log_checkpoint(self, trial: "Trial", checkpoint: "Checkpoint") -> None:
        name = Path(checkpoint.path).name
        done = self._logged_checkpoints.setdefault(trial.trial_id, [])
        if name in done:
            return
        run = self._run(trial)
        local, temp = _local_dir(checkpoint)
        tags = {"w2s.checkpoint_artifact": f"{CHECKPOINT_ARTIFACT_DIR}/{name}", "w2s.checkpoint_path": checkpoint.path}
        ref = read_pointer(local)
        if ref is not None:  # the weights stay in the stage cache: log the pointer, tag their URI
            tags.update({"w2s.checkpoint_uri": ref["weights_uri"], "w2s.stage_key": ref["key"]})
        self.client.log_artifact(run, local, f"{CHECKPOINT_ARTIFACT_DIR}/{name}", remove_after=temp)
        self.client.set_tags(run, tags)
        done.append(name)

    def _status_tags(self, trial: "Trial", status: str | None = None) -> dict[str, str]:
        return {"w2s.trial_id": trial.trial_id, "w2s.trial_status": status or str(trial.status)}


def _local_dir(checkpoint: "Checkpoint") -> tuple[str, str | None]:
    """(local directory with the checkpoint's files, temp dir to delete after upload or None).

    A checkpoint in cloud storage (`s3://`, `gs://`) is downloaded to a temporary directory first.
    """
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return checkpoint.path, None
    temp = tempfile.mkdtemp(prefix="w2s_ckpt_")
    return checkpoint.to_directory(temp), temp


def _error_text(trial: "Trial") -> tuple[str | None, str | None]:
    """(one-line error, full error text) of a trial's latest failure."""
    full: Any = None  # a TuneError or its text
    try:
        full = trial.get_error()
    except Exception:  # noqa: BLE001
        full = None
    if full is not None and not isinstance(full, str):
        full = str(full)
    if not full and trial.error_file and Path(trial.error_file).is_file():
        full = Path(trial.error_file).read_text(errors="replace")
    if not full:
        return None, None
    return _summarize_error(full), full


def _summarize_error(text: str) -> str:
    """The most telling line of a Ray error text: the last `SomeError: message` line, else the first line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    exc_lines = [ln for ln in lines if _EXC_LINE.match(ln)]
    chosen = exc_lines[-1] if exc_lines else next((ln for ln in lines if not ln.startswith("Failure #")), lines[0])
    return chosen[:1000]
