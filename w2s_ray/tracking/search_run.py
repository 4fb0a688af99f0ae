"""The driver-side MLflow record of one search: a parent run and its shared-stage runs."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from w2s_ray.errors import UserError
from w2s_ray.tracking.client import UNLOGGED_FILENAME, BufferedClient, LogReport, is_token
from w2s_ray.tracking.provenance import command_line, git_commit, provenance_tags
from w2s_ray.tracking.uri import artifact_location_for, redact
from w2s_ray.tracking.values import flatten, numeric, split_metrics, to_params, to_tags

if TYPE_CHECKING:
    from w2s_ray.tracking.callback import MLflowTrialCallback  # imports this module; Ray Tune on import

ROLE_SEARCH, ROLE_STAGE, ROLE_TRIAL = "search", "stage", "trial"
_STAGE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def search_key(search_name: str) -> str:
    """A filter-safe key for a search name (names may hold any characters)."""
    return hashlib.sha256(search_name.encode()).hexdigest()[:20]


def unlogged_path(storage_path: str | Path) -> str:
    """Where writes that could not reach MLflow are recorded: `<storage>/mlflow_unlogged.json`."""
    return f"{str(storage_path).rstrip('/')}/{UNLOGGED_FILENAME}"


def find_search_run(tracking_uri: str, experiment_name: str, search_name: str,
                    search_id: str | None = None) -> str | None:
    """The parent run id of a search, or None (for reports on a finished search). With ``search_id``
    (from the search record) only that search's run matches, not an earlier one of the same name."""
    client = BufferedClient.shared(tracking_uri)
    with client.short_http():
        exp = client.mlflow.get_experiment_by_name(experiment_name)
        if exp is None:
            return None
        runs = client.mlflow.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`w2s.search_key` = '{search_key(search_name)}' and tags.`w2s.role` = '{ROLE_SEARCH}'"
                          + (f" and tags.`w2s.search_id` = '{search_id}'" if search_id else ""),
            max_results=1, order_by=["attributes.start_time ASC"],
        )
    return runs[0].info.run_id if runs else None


class SearchTracker:
    """Parent run per search, stage runs nested under it, and the final summary.

    Resuming a search (same `search_name` in the same experiment, and the same `search_id` when
    one is given) continues the same parent run.
    All writes after `start` are buffered (see `BufferedClient`): a tracking server that goes down
    mid-search delays them, and `finish` reports anything that could not be logged.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        search_name: str,
        storage_path: str | Path,
        *,
        artifact_location: str | None = None,
        search_id: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.search_id = search_id
        self.experiment_name = experiment_name
        self.search_name = search_name
        self.storage_path = str(storage_path)
        self.unlogged_path = unlogged_path(storage_path)
        self._artifact_location = artifact_location
        self.client = BufferedClient.shared(tracking_uri, self.unlogged_path)
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.resumed = False
        self.stage_run_ids: dict[str, str] = {}

    # ----- parent run ------------------------------------------------------------------------
    def start(
        self,
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
        *,
        search_space: Mapping[str, Any] | None = None,
    ) -> str:
        """Get-or-create the experiment and the parent run; return the parent run id.

        `params` (flattened) become params; `tags` become tags; `search_space` is logged as
        `search_space.yaml` and as `space/<key>` params. CLI, git commit and package versions are
        recorded as tags. Raises `UserError` if the tracking backend cannot be reached.
        """
        try:
            with self.client.short_http():
                self.experiment_id = self._get_or_create_experiment()
                match = {"w2s.search_key": search_key(self.search_name), "w2s.role": ROLE_SEARCH}
                if self.search_id:
                    match["w2s.search_id"] = self.search_id
                run_tags = {"w2s.search_name": self.search_name, "w2s.storage_path": self.storage_path,
                            **provenance_tags()}
                self.parent_run_id, created = self.client.get_or_create_run(
                    self.experiment_id, match, run_tags, run_name=self.search_name
                )
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 (any backend failure here is a setup problem)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"cannot start MLflow tracking at {redact(self.tracking_uri)}: {first}") from None
        self.resumed = not created
        run = self.parent_run_id
        if self.resumed:
            self._note_resume(run)
        self._restore_stage_ids(run)
        self.client.set_status(run, "RUNNING")
        all_params = to_params(params)
        if search_space:
            all_params.update(to_params(search_space, prefix="space/"))
            self._log_yaml(run, "search_space.yaml", search_space)
        self.client.log_batch(run, params=all_params, tags=to_tags(tags or {}))
        return run

    def log_artifacts(self, artifacts: Mapping[str, Path]) -> None:
        """Log files or directories to the parent run; the key is the artifact sub-directory ("" = root)."""
        _, run = self._require_started()
        for name, path in artifacts.items():
            self.client.log_artifact(run, path, name or None)

    def finish(
        self,
        summary: Mapping[str, Any],
        best_config: Mapping[str, Any],
        artifacts: Mapping[str, Path] | None = None,
        status: str = "FINISHED",
        *,
        flush_timeout_s: float = 30.0,
    ) -> LogReport:
        """Log the search's outcome to the parent run, end it, and flush all buffered writes.

        `summary`: numbers become metrics (e.g. `baseline_val_pgr`, `best_val_pgr`,
        `baseline_test_pgr`, `best_test_pgr`; NaN is recorded as a tag), other values tags
        `summary.<k>`; the whole dict is also `summary.json`. `best_config` goes to
        `best_config.yaml` and to tags `best.<k>` (nested keys joined by "/"). `artifacts` maps an
        artifact sub-directory to a file or directory (e.g. {"": summary_table_csv, "results": trials_parquet}).
        Returns what could not be logged (also written to `<storage>/mlflow_unlogged.json`).
        """
        _, run = self._require_started()
        metrics, nonfinite = split_metrics(summary, skip_prefixes=())
        other = {k: v for k, v in flatten(summary).items() if numeric(v) is None}
        self._log_yaml(run, "best_config.yaml", best_config)
        self._log_json(run, "summary.json", summary)
        self.client.log_batch(
            run, metrics, params={},
            tags={**nonfinite, **to_tags(other, prefix="summary."), **to_tags(best_config, prefix="best.")},
        )
        self.log_artifacts(artifacts or {})
        self.client.set_status(run, status)
        return self.client.flush(flush_timeout_s)

    # ----- stage runs --------------------------------------------------------------------------
    def log_stage(
        self,
        stage: str,
        key: str,
        metrics: Mapping[str, Any],
        artifacts: Mapping[str, Path],
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """Get-or-create the run of a shared stage (`weak`, `ceiling`, `bootstrap_<k>`), nested
        under the parent, and log its metrics, params and artifacts (weak-label parquet,
        checkpoint dir; key = artifact sub-directory). Idempotent per `key` (the stage's cache
        key): a stage already logged completely is not logged again. Returns its run id.
        """
        experiment, parent = self._require_started()
        if not _STAGE_NAME.match(stage):
            raise ValueError(f"stage name {stage!r} must match {_STAGE_NAME.pattern}")
        stage_key = key if is_token(key) and len(key) <= 64 else hashlib.sha256(key.encode()).hexdigest()[:32]
        run = self.client.ensure_run(
            experiment,
            {"mlflow.parentRunId": parent, "w2s.role": ROLE_STAGE, "w2s.stage_key": stage_key},
            tags={"w2s.stage": stage, "w2s.search_key": search_key(self.search_name)},
            run_name=f"stage:{stage}",
        )
        self.stage_run_ids[stage] = run
        self.client.set_tags(parent, {f"w2s.stage_run.{stage}": run})
        if self._stage_complete(run):
            return run
        values, nonfinite = split_metrics(metrics, skip_prefixes=())
        self.client.log_batch(run, values, params=to_params(params), tags={**nonfinite, **to_tags(tags or {})})
        for name, path in artifacts.items():
            self.client.log_artifact(run, path, name or None)
        self.client.set_tags(run, {"w2s.stage_complete": "true"})
        self.client.set_status(run, "FINISHED")
        return run

    def tag_weights(self, callback: MLflowTrialCallback, trial_keys: Mapping[str, str], kept: Mapping[str, list[str]],
                    pruned: list[str], cache_uri: str) -> None:
        """Record on each trial's run whether its student's weights were kept (``w2s.checkpoint_kept``:
        baseline, best, topK) or pruned, and on the parent run the URIs of the kept ones
        (``w2s.checkpoint.<reason>``), so the baseline's and the best student's weights are one
        click from the search in the UI. ``callback`` maps trial ids to runs."""
        from w2s_ray.pipeline.stage_pointer import weights_uri

        self._require_started()
        pruned_set = set(pruned)
        parent: dict[str, str] = {}
        for trial_id, key in trial_keys.items():
            run = callback.run_id(trial_id)
            uri = weights_uri(cache_uri, "student", key)
            if key in kept:
                tags = {"w2s.checkpoint_kept": ",".join(kept[key]), "w2s.checkpoint_uri": uri}
                parent.update({f"w2s.checkpoint.{reason}": uri for reason in kept[key]})
            elif key in pruned_set:
                tags = {"w2s.checkpoint_pruned": "true"}
            else:
                continue
            if run is not None:
                self.client.set_tags(run, tags)
        if parent:
            _, parent_run = self._require_started()
            self.client.set_tags(parent_run, parent)

    # ----- trial callback ----------------------------------------------------------------------
    def callback(self, checkpoints: str = "best", flush_timeout_s: float = 30.0) -> MLflowTrialCallback:
        """A Tune callback that logs each trial as a child run of this search."""
        from w2s_ray.tracking.callback import MLflowTrialCallback

        experiment, parent = self._require_started()
        return MLflowTrialCallback(
            self.tracking_uri, experiment, parent, dict(self.stage_run_ids),
            checkpoints=checkpoints, unlogged_path=self.unlogged_path, flush_timeout_s=flush_timeout_s,
        )

    # ----- internals ---------------------------------------------------------------------------
    def _require_started(self) -> tuple[str, str]:
        """(experiment id, parent run id); RuntimeError before `start()`."""
        if self.experiment_id is None or self.parent_run_id is None:
            raise RuntimeError("SearchTracker.start() must be called first")
        return self.experiment_id, self.parent_run_id

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        mlf = self.client.mlflow
        exp = mlf.get_experiment_by_name(self.experiment_name)
        if exp is None:
            location = self._artifact_location or artifact_location_for(self.tracking_uri, self.storage_path)
            try:
                return mlf.create_experiment(self.experiment_name, artifact_location=location)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = mlf.get_experiment_by_name(self.experiment_name)
                assert exp is not None  # it exists: creating it just failed for that reason
        if exp.lifecycle_stage == "deleted":
            raise UserError(
                f"MLflow experiment {self.experiment_name!r} is deleted; restore it "
                f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or pick another name"
            )
        return exp.experiment_id

    def _note_resume(self, run: str) -> None:
        try:
            with self.client.short_http():
                count = int(self.client.mlflow.get_run(run).data.tags.get("w2s.resume_count", "0"))
        except Exception:  # noqa: BLE001
            count = 0
        commit, _ = git_commit()
        self.client.set_tags(run, {
            "w2s.resume_count": count + 1,
            f"w2s.resume{count + 1}.cli": command_line(),
            f"w2s.resume{count + 1}.git_commit": commit or "unknown",
        })

    def _restore_stage_ids(self, run: str) -> None:
        try:
            with self.client.short_http():
                tags = self.client.mlflow.get_run(run).data.tags
        except Exception:  # noqa: BLE001
            return
        prefix = "w2s.stage_run."
        self.stage_run_ids.update({k[len(prefix):]: v for k, v in tags.items() if k.startswith(prefix)})

    def _stage_complete(self, run: str) -> bool:
        run_id = self.client.resolve(run)
        if run_id is None:
            return False
        try:
            with self.client.short_http():
                return self.client.mlflow.get_run(run_id).data.tags.get("w2s.stage_complete") == "true"
        except Exception:  # noqa: BLE001 (unknown: log again; re-logging is harmless)
            return False

    def _log_yaml(self, run: str, name: str, data: Mapping[str, Any]) -> None:
        self._log_text(run, name, yaml.safe_dump(_plain(data), sort_keys=False))

    def _log_json(self, run: str, name: str, data: Mapping[str, Any]) -> None:
        self._log_text(run, name, json.dumps(_plain(data), indent=1, default=str))

    def _log_text(self, run: str, name: str, text: str) -> None:
        staging = Path(tempfile.mkdtemp(prefix="w2s_mlflow_"))  # kept until the upload succeeds
        (staging / name).write_text(text)
        self.client.log_artifact(run, staging / name, remove_after=staging)


def _plain(value: Any) -> Any:
    """YAML/JSON-safe copy: mappings/sequences recursed, numpy scalars unwrapped, the rest str()."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return str(value)
