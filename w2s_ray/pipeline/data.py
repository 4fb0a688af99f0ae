"""A task's splits, ready for training: inputs, ids and GT labels per split."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from w2s_ray.config import DataConfig
from w2s_ray.train.data import inputs_from_rows

if TYPE_CHECKING:
    import datasets


@dataclass
class Split:
    """One split: model inputs, stable ids and ground-truth labels."""

    ids: list[str]
    inputs: list
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def job_view(self, with_labels: bool = True) -> dict:
        return {"inputs": self.inputs, "ids": self.ids,
                "labels": self.labels.astype(float).tolist() if with_labels else None}


@dataclass
class PreparedData:
    """All splits of one task, plus a content fingerprint used in stage keys."""

    task: str
    kind: str
    label_meaning: str
    splits: dict[str, Split]
    fingerprint: str


def _fingerprint(splits: dict[str, Split]) -> str:
    digest = hashlib.sha256()
    for name in sorted(splits):
        split = splits[name]
        digest.update(name.encode())
        for row_id, inp, label in zip(split.ids, split.inputs, split.labels):
            digest.update(f"{row_id}\x1f{inp}\x1f{float(label)}\x1e".encode())
    return digest.hexdigest()[:24]


def pool_rows(ds: datasets.Dataset, splits: Mapping[str, datasets.Dataset]) -> datasets.Dataset:
    """The rows of ``ds`` that ``splits`` hold (by id): the pool a further seed reshuffles."""
    from w2s_ray.tasks.splits import column

    wanted = {str(i) for part in splits.values() for i in column(part, "id")}
    return ds.select([i for i, row_id in enumerate(column(ds, "id")) if str(row_id) in wanted])


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Load a task and carve its seeded, disjoint, deduplicated splits."""
    from w2s_ray.tasks import get_task, load_task, make_splits

    task = get_task(cfg.task)
    ds = load_task(cfg.task, cfg.data_dir, dict(cfg.task_options))
    if cfg.pool_seed is not None and cfg.pool_seed != cfg.seed:
        ds = pool_rows(ds, make_splits(ds, cfg.sizes, cfg.pool_seed, balance=cfg.balance))
    raw = make_splits(ds, cfg.sizes, cfg.seed, balance=cfg.balance)
    splits = {
        name: Split(
            ids=[str(x) for x in part["id"]],
            inputs=inputs_from_rows(part.to_dict(), task.kind),
            labels=np.asarray(part["label"], dtype=np.float64),
        )
        for name, part in raw.items()
    }
    return PreparedData(cfg.task, task.kind, task.label_meaning, splits, _fingerprint(splits))
