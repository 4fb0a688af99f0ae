"""A self-contained description of one training: what a Ray Train worker receives."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from w2s_ray.config import TrainConfig


@dataclass
class TrainJob:
    """Everything one training needs; plain data so Ray can ship it to workers.

    ``predict`` names the splits to predict once trained (their inputs, ids and GT labels);
    ``monitor`` names per-epoch accuracies as ``name -> (split, labels)``, e.g. validation
    accuracy against GT and against weak labels. Outputs are published atomically into the
    stage cache at ``cache_uri``/``cache_kind``/``cache_key``.
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
    checkpoint_every_epoch: bool = True
    threads: int = 0  # torch intra-op threads for this worker (0: leave as is)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def entrypoint():
        from w2s_ray.train.worker import train_worker

        return train_worker

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainJob":
        data = dict(data)
        data["cfg"] = TrainConfig(**data["cfg"])
        data["monitor"] = {k: (v[0], list(v[1])) for k, v in data.get("monitor", {}).items()}
        return cls(**data)
