"""Where a training runs: in-process, or as a Ray Train ``TorchTrainer`` on the cluster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from w2s_ray.train.job import TrainJob

if TYPE_CHECKING:
    from ray.train import ScalingConfig, UserCallback


class Job(Protocol):
    """A unit of work for an executor: a training (``TrainJob``) or an extraction (``ExtractJob``)."""

    stage: str
    threads: int

    def to_dict(self) -> dict[str, Any]: ...

    @staticmethod
    def entrypoint() -> Callable[[dict[str, Any]], None]: ...


class Executor(Protocol):
    """Runs one job to completion; outputs land in the job's cache entry."""

    def run(self, job: Job, name: str) -> None: ...


class LocalExecutor:
    """In-process (used by ``python -m w2s_ray.run`` and unit tests)."""

    def run(self, job: Job, name: str) -> None:
        job.entrypoint()(job.to_dict())


@dataclass
class ScalingSpec:
    """Ray Train scaling, from CLI/config. Fractional GPUs let small models share a card."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    extra_resources: dict[str, float] = field(default_factory=dict)

    def to_ray(self) -> ScalingConfig:
        from ray.train import ScalingConfig

        resources = {"CPU": self.cpus_per_worker, **self.extra_resources}
        if self.use_gpu:
            resources["GPU"] = self.gpus_per_worker
        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=resources)


@dataclass
class RayTrainExecutor:
    """Runs each job as a ``TorchTrainer``; retried workers resume from the last checkpoint.

    The checkpoint (weights and optimizer state) lives only while the training runs: once
    ``fit`` returns, the stage has published into the stage cache and its checkpoints are deleted.

    ``callbacks`` (Ray Train callbacks) see every training job's worker reports; a search passes
    one that forwards them to the enclosing Tune trial, which is how a student's epochs reach it.
    Extraction jobs run without them. A callable is called once, at the first training: Tune's
    ``TuneReportCallback`` starts a queue actor, which a trial that only fits probes in-process
    must not pay for.
    """

    storage_path: str
    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    max_failures: int = 3
    callbacks: Sequence[UserCallback] | Callable[[], Sequence[UserCallback]] = ()
    keep_checkpoints: bool = False  # keep each run's resumable Ray Train checkpoint after it publishes
    # a training writes its resumable checkpoint at an epoch's end only once this many seconds of
    # work would otherwise be lost (0: every epoch; see w2s_ray.train.worker.checkpoint_due)
    checkpoint_interval_s: float = 0.0
    freed_bytes: int = 0  # checkpoint bytes deleted after runs published (for benchmarks)

    def run(self, job: Job, name: str) -> None:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        callbacks = self._callbacks() if isinstance(job, TrainJob) else []
        job.threads = max(1, round(self.scaling.cpus_per_worker))
        if isinstance(job, TrainJob):
            job.checkpoint_interval_s = self.checkpoint_interval_s
        trainer = TorchTrainer(
            job.entrypoint(),
            train_loop_config=job.to_dict(),
            scaling_config=self.scaling.to_ray(),
            # one worker exchanges no tensors: gloo also starts where torch has no NCCL (a CPU build
            # on a node that declares GPUs); several GPU workers keep Ray's default, NCCL
            torch_config=TorchConfig(backend="gloo") if self.scaling.num_workers == 1 else None,
            run_config=RunConfig(
                name=name,
                storage_path=self.storage_path,
                # a worker lost with a node that Ray drained for PREEMPTION (spot reclaim) is retried
                # from the last checkpoint without using up max_failures (Train V2 counts it apart)
                # (Train V2's FailureConfig and RunConfig; the type hints are V1's)
                failure_config=FailureConfig(max_failures=self.max_failures, max_preemption_failures=-1),  # type: ignore[call-arg]
                checkpoint_config=CheckpointConfig(num_to_keep=1),
                callbacks=callbacks,  # type: ignore[arg-type]
            ),
        )
        result = trainer.fit()
        if self.keep_checkpoints:
            return
        removed = drop_checkpoints(result.path, result.filesystem)
        if removed is not None:
            self.freed_bytes += removed


    def _callbacks(self) -> list[UserCallback]:
        """The training callbacks, made on first use when given as a factory."""
        if callable(self.callbacks):
            self.callbacks = list(self.callbacks())
        return list(self.callbacks)


def drop_checkpoints(run_path: str, filesystem: Any = None) -> int | None:
    """Delete a finished Ray Train run's checkpoints (model + optimizer state); returns the bytes freed.

    The stage has already published its weights into the stage cache, so the resumable
    checkpoint is a second copy (three times the weights, with AdamW's moments) that nothing
    reads again. The run's other files (metrics, logs) stay. None when the run could not be read.
    """
    import pyarrow.fs as pafs

    try:
        fs, path = (filesystem, run_path) if filesystem is not None else pafs.FileSystem.from_uri(run_path)
        freed = 0
        for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
            if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
                continue
            freed += sum(f.size or 0 for f in fs.get_file_info(pafs.FileSelector(info.path, recursive=True))
                         if f.type == pafs.FileType.File)
            fs.delete_dir(info.path)
        return freed
    except OSError:  # cleanup must never fail a stage that published
        return None
