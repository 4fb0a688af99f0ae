"""The weak-to-strong stages: weak, ceiling, bootstrap links and student, each cached.

Every stage is a :class:`TrainJob` keyed by a hash of everything that determines its
output (data fingerprint, model spec, train config, upstream stage keys). A stage found in
the cache is reused, never recomputed; otherwise the executor trains it (in-process or as
a Ray Train ``TorchTrainer``) and the worker publishes it atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from w2s_ray.cache import StageCache, stage_key
from w2s_ray.config import TrainConfig, to_dict
from w2s_ray.data import PreparedData
from w2s_ray.train.executor import Executor
from w2s_ray.train.job import TrainJob


@dataclass
class StageResult:
    """A completed stage in the cache: its key, directory and metrics."""

    kind: str
    key: str
    path: Path
    model: str
    config: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads((self.path / "metrics.json").read_text())

    def probs(self, split: str) -> np.ndarray:
        return pq.read_table(self.path / "predictions" / f"{split}.parquet")["prob"].to_numpy()

    def predictions_path(self, split: str) -> Path:
        return self.path / "predictions" / f"{split}.parquet"


@dataclass
class WeakLabelPolicy:
    """How weak labels are relabelled or filtered before the student sees them."""

    transform: str = "soft"  # soft | hard
    filter_min_conf: float = 0.0  # drop examples with |2p - 1| below this

    def apply(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(kept row indices, targets for them)."""
        keep = np.flatnonzero(np.abs(2 * probs - 1) >= self.filter_min_conf)
        if len(keep) == 0:  # never train on nothing: keep the most confident half
            keep = np.argsort(-np.abs(2 * probs - 1))[: max(1, len(probs) // 2)]
        targets = probs[keep]
        if self.transform == "hard":
            targets = (targets > 0.5).astype(np.float64)
        return keep, targets


def labelled_val(labels: np.ndarray, cap: int | None) -> np.ndarray:
    """GT validation labels with all but the first ``cap`` hidden (NaN): the few-labels setting."""
    out = labels.astype(np.float64).copy()
    if cap is not None and cap < len(out):
        out[cap:] = np.nan
    return out


@dataclass
class Pipeline:
    """Runs (or reuses) stages for one task's prepared data."""

    data: PreparedData
    cache: StageCache
    executor: Executor
    val_labels: int | None = None
    predict_test: bool = True
    trial_meta: dict[str, Any] = field(default_factory=dict)
    objective_meta: dict[str, Any] | None = None  # lets student workers report a per-epoch objective

    # -- generic ------------------------------------------------------------
    def _run(self, kind: str, model: str, cfg: TrainConfig, train_split: str, rows: np.ndarray,
             targets: np.ndarray, predict: list[str], monitor: dict, upstream: dict, meta: dict | None = None) -> StageResult:
        key = stage_key(kind, {
            "data": self.data.fingerprint, "model": model, "train": to_dict(cfg), "train_split": train_split,
            "rows": rows.tolist(), "targets": np.round(targets, 12).tolist(), "predict": sorted(predict),
            "upstream": upstream,
        })
        found = self.cache.get(kind, key)
        if found is None:
            split = self.data.splits[train_split]
            job = TrainJob(
                stage=kind, model=model, kind=self.data.kind, cfg=cfg,
                train_inputs=[split.inputs[i] for i in rows], train_targets=targets.astype(float).tolist(),
                predict={name: self.data.splits[name].job_view(with_labels=self._labels_visible(kind, name))
                         for name in predict},
                monitor=monitor, cache_uri=self.cache.uri, cache_kind=kind, cache_key=key,
                meta={"task": self.data.task, **self.trial_meta, **(meta or {})},
            )
            if kind == "student" and self.objective_meta:
                job.meta["objective"] = self.objective_meta
            trial = self.trial_meta.get("trial_id")
            self.executor.run(job, name=f"{kind}-{key}" + (f"-{trial}" if trial else ""))
            found = self.cache.get(kind, key)
            if found is None:
                raise RuntimeError(f"stage {kind} {key} finished without publishing its outputs")
        return StageResult(kind, key, found, model, to_dict(cfg))

    def _labels_visible(self, kind: str, split: str) -> bool:
        """Students never carry test labels: test metrics are computed once, at the end."""
        return not (kind == "student" and split == "test")

    def _val_monitor(self, extra: dict | None = None) -> dict:
        val = labelled_val(self.data.splits["val"].labels, self.val_labels)
        return {"val_acc_gt": ("val", val.tolist()), **(extra or {})}

    def _eval_splits(self) -> list[str]:
        return ["val", "test"] if self.predict_test else ["val"]

    # -- stages -------------------------------------------------------------
    def weak(self, model: str, cfg: TrainConfig) -> StageResult:
        """Weak model: GT on split A; predicts B (weak labels), val and test."""
        a = self.data.splits["a"]
        return self._run("weak", model, cfg, "a", np.arange(len(a)), a.labels, ["b", *self._eval_splits()],
                         self._val_monitor(), upstream={})

    def ceiling(self, model: str, cfg: TrainConfig) -> StageResult:
        """Strong ceiling: GT on split B."""
        b = self.data.splits["b"]
        return self._run("ceiling", model, cfg, "b", np.arange(len(b)), b.labels, self._eval_splits(),
                         self._val_monitor(), upstream={})

    def bootstrap(self, chain: list[str], cfg: TrainConfig, weak: StageResult,
                  policy: WeakLabelPolicy | None = None) -> list[StageResult]:
        """Links M1..Mk: each trained on the previous link's labels on B, then relabels B.

        Each link's key includes its whole chain prefix, so chains sharing a prefix share links.
        """
        links: list[StageResult] = []
        source = weak
        for i, model in enumerate(chain, start=1):
            rows, targets = (policy or WeakLabelPolicy()).apply(source.probs("b"))
            link = self._run(f"bootstrap_{i}", model, cfg, "b", rows, targets, ["b", *self._eval_splits()],
                             self._val_monitor(), upstream={"labels_from": source.key}, meta={"link": i})
            links.append(link)
            source = link
        return links

    def student(self, model: str, cfg: TrainConfig, labels_from: StageResult,
                policy: WeakLabelPolicy | None = None, weak: StageResult | None = None) -> StageResult:
        """Strong student trained on (processed) labels from the weak model or last bootstrap link."""
        policy = policy or WeakLabelPolicy()
        rows, targets = policy.apply(labels_from.probs("b"))
        ref = weak or labels_from
        monitor = self._val_monitor({"val_acc_weak": ("val", ref.probs("val").tolist())})
        return self._run("student", model, cfg, "b", rows, targets, self._eval_splits(), monitor,
                         upstream={"labels_from": labels_from.key, "policy": to_dict(policy)})

    def select(self, role: str, model: str, base: TrainConfig, grid: list[dict]) -> tuple[StageResult, dict, list[dict]]:
        """Fair references: train each grid point, keep the best GT validation accuracy.

        Returns (chosen stage, chosen overrides, table of all candidates).
        """
        candidates = grid or [{}]
        table: list[dict] = []
        best: tuple[float, StageResult, dict] | None = None
        val = labelled_val(self.data.splits["val"].labels, self.val_labels)
        mask = ~np.isnan(val)
        for overrides in candidates:
            cfg = base.replace(**overrides)
            stage = self.weak(model, cfg) if role == "weak" else self.ceiling(model, cfg)
            acc = float(((stage.probs("val")[mask] > 0.5) == (val[mask] > 0.5)).mean())
            table.append({**overrides, "val_acc": acc, "key": stage.key})
            if best is None or acc > best[0]:
                best = (acc, stage, overrides)
        assert best is not None
        return best[1], best[2], table
