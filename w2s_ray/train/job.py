"""A self-contained description of one training: what a Ray Train worker receives."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from w2s_ray.config import TrainConfig


class EpochMetrics(Protocol):
    """Extra metrics for each epoch's report, e.g. a search's objective.

    Called on rank 0 at each epoch end with the epoch's metrics (``history`` entry plus the
    ``monitor`` accuracies) and the monitored splits' predictions (``split -> p(label 1)``);
    what it returns joins the report, and its ``val_*`` entries the stage's history. It travels
    to Ray Train workers inside the job, so it must pickle.
    """

    def __call__(self, metrics: Mapping[str, Any], predictions: Mapping[str, np.ndarray]) -> dict[str, float]: ...


@dataclass
class TrainJob:
    """Everything one training needs; plain data so Ray can ship it to workers.

    ``predict`` names the splits to predict once trained (their inputs, ids and GT labels);
    ``monitor`` names per-epoch accuracies as ``name -> (split, labels)``, e.g. validation
    accuracy against GT and against weak labels; ``epoch_metrics`` adds metrics of the caller's
    own to each epoch's report. ``reports_per_epoch`` k > 1 adds k − 1 progress reports inside
    each epoch (the same metrics, no checkpoint), so an early-stopping scheduler can stop a
    training before its first epoch ends; it changes no result and is not part of the stage key.
    Outputs are published atomically into the stage cache at
    ``cache_uri``/``cache_kind``/``cache_key``.
    """

    stage: str
    model: str
    kind: str
    cfg: TrainConfig
    train_inputs: list
    train_targets: list[float]
    predict: dict[str, dict[str, list]] = field(default_factory=dict)  # split -> {inputs, ids, labels}
    monitor: dict[str, tuple[str, list[float]]] = field(default_factory=dict)
    cache_uri: str = ""
    cache_kind: str = ""
    cache_key: str = ""
    save_weights: bool = True
    checkpoint_interval_s: float = 0.0  # resumable checkpoint at an epoch's end once this much work is at risk
    threads: int = 0  # torch intra-op threads for this worker (0: leave as is)
    meta: dict[str, Any] = field(default_factory=dict)
    epoch_metrics: EpochMetrics | None = None
    reports_per_epoch: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain data for Ray's ``train_loop_config``; the epoch hook is passed as is, not as a dict."""
        data = dataclasses.asdict(dataclasses.replace(self, epoch_metrics=None))
        data["epoch_metrics"] = self.epoch_metrics
        return data

    @staticmethod
    def entrypoint() -> Callable[[dict[str, Any]], None]:
        from w2s_ray.train.worker import train_worker

        return train_worker

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainJob":
        data = dict(data)
        data["cfg"] = TrainConfig(**data["cfg"])
        data["monitor"] = {k: (v[0], list(v[1])) for k, v in data.get("monitor", {}).items()}
        return cls(**data)
