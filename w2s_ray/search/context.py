"""What every trial shares: the prepared data, the finished reference stages and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from w2s_ray.analysis.metrics import GAP_Z
from w2s_ray.config import TrainConfig
from w2s_ray.pipeline.data import PreparedData
from w2s_ray.pipeline.stages import StageResult
from w2s_ray.train.executor import ScalingSpec


@dataclass
class SharedStages:
    """The stages that do not depend on the student's knobs, computed once per search."""

    weak: StageResult
    ceiling: StageResult
    links: list[StageResult]  # bootstrap prefix k is links[:k]
    weak_val_acc: float
    ceiling_val_acc: float
    gap_se: float | None = None  # paired standard error of ceiling − weak on the labelled val split
    selection: dict[str, Any] = field(default_factory=dict)  # fair-reference choices and tables
    activations: Any = None  # SplitActivations of the strong model (and links) for probe students
    chains: dict[int, list[StageResult]] = field(default_factory=dict)  # folds -> links (``links`` is the default's)


@dataclass
class SearchContext:
    """Shipped once to every trial through ``tune.with_parameters``."""

    data: PreparedData
    shared: SharedStages
    cache_uri: str
    train_storage: str
    strong: str
    student_base: TrainConfig
    scaling: ScalingSpec
    max_failures: int
    checkpoint_interval_s: float
    val_labels: int | None
    min_gap: float
    select_on: str
    gap_z: float = GAP_Z
    baselines: list[dict[str, Any]] = field(default_factory=list)  # the points measured first, in order
    reports_per_epoch: int = 1  # a student's reports to Tune per epoch (ASHA rungs finer than an epoch)
