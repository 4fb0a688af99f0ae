"""Config dataclasses, kept apart from the code that executes them.

Every dataclass here is plain data: it hashes stably (see `w2s_ray.pipeline.cache.stage_key`) and
round-trips through dicts, so Ray can ship it to workers and the cache can key on it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

TRAIN_MODES: tuple[str, ...] = ("finetune", "probe", "lora")


@dataclass(frozen=True)
class SplitSizes:
    """Rows per split. A: weak model's GT; B: student (weak labels) / ceiling (GT)."""

    a: int = 1000
    b: int = 1000
    val: int = 500
    test: int = 1000


@dataclass(frozen=True)
class DataConfig:
    """Which task, where its files are, and how it is split."""

    task: str
    data_dir: str | None = None
    sizes: SplitSizes = field(default_factory=SplitSizes)
    seed: int = 0
    balance: bool = True  # exactly n//2 label-0 rows per split (see w2s_ray.tasks.splits)
    task_options: dict[str, Any] = field(default_factory=dict)
    # When set, the rows are the pool that `pool_seed` draws, reshuffled among the splits by
    # `seed`: further seeds reuse the same texts (and so their cached activations).
    pool_seed: int | None = field(default=None, metadata={"omit_if_default": True})


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained: optimiser, schedule, mode and loss."""

    lr: float = 5e-5
    epochs: int = 2
    batch_size: int = 32
    max_length: int = 128
    mode: str = "finetune"
    lora_r: int = 8
    pooling: str = "auto"
    weight_decay: float = 0.0
    loss: str = "xent"
    loss_params: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    # probe mode: which hidden state of the (cached) activations; None = the model's last.
    # Left out of stage keys at its default, so keys of stages that predate it stay valid.
    layer: int | None = field(default=None, metadata={"omit_if_default": True})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


# Student knobs a search space may name, beyond the loss parameters (which come from the loss
# registry, `w2s_ray.losses.LOSSES[name].params`) and the weak-label methods' parameters (from
# `w2s_ray.weak_labels.WEAK_LABELS[name].params`).
STUDENT_KNOBS: dict[str, type] = {
    "lr": float,
    "epochs": int,
    "batch_size": int,
    "mode": str,
    "lora_r": int,
    "weight_decay": float,  # AdamW decay; in probe mode the L2 strength
    "layer": int,  # probe mode: the strong model's hidden state the probe reads
    "loss": str,
    "bootstrap_steps": int,
    "bootstrap_folds": int,  # folds of B every link and relabelling method is cross-fitted over
    "weak_labels": str,  # a method of the registry `w2s_ray.weak_labels.WEAK_LABELS` (its parameters are flat params)
    "filter_min_conf": float,  # legacy: confidence_filter's min_conf
    "weak_label_transform": str,  # legacy: soft | hard
}

# How weak labels may be relabelled before the student sees them.
WEAK_LABEL_TRANSFORMS: tuple[str, ...] = ("soft", "hard")


def to_dict(obj: Any) -> Any:
    """Recursively turn dataclasses into plain dicts (for hashing, JSON and Ray)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_if_default") and getattr(obj, f.name) == f.default)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
