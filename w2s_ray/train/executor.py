"""Where a training runs: in-process, or as a Ray Train ``TorchTrainer`` on the cluster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from w2s_ray.train.job import TrainJob


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

    def to_ray(self):
        from ray.train import ScalingConfig

        resources = {"CPU": self.cpus_per_worker, **self.extra_resources}
        if self.use_gpu:
            resources["GPU"] = self.gpus_per_worker
        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=resources)


@dataclass
class RayTrainExecutor:
    """Runs each job as a ``TorchTrainer``; retried workers resume from the last checkpoint.

    ``report_to_tune`` forwards worker reports to the enclosing Tune trial
    (``TuneReportCallback``), which is how a student's epochs reach the search.
    """

    storage_path: str
    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    max_failures: int = 3
    report_to_tune: bool = False

    def run(self, job: Job, name: str) -> None:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        callbacks = []
        if self.report_to_tune and isinstance(job, TrainJob):
            from ray.tune.integration.ray_train import TuneReportCallback

            callbacks.append(TuneReportCallback())
        job.threads = max(1, round(self.scaling.cpus_per_worker))
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
        trainer.fit()
