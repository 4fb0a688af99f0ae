"""The weak-to-strong stages: weak, ceiling, bootstrap links and student, each cached.

A bootstrap link (and every relabelling that trains on B, e.g. strong-to-strong) is
cross-fitted (:mod:`w2s_ray.pipeline.crossfit`): one training per fold of B on the other folds, each
labelling only its held-out fold, so no model labels a row it was trained on.

Every stage is a :class:`TrainJob` keyed by a hash of everything that determines its
output (data fingerprint, model spec, train config, upstream stage keys). A stage found in
the cache is reused, never recomputed; otherwise the executor trains it (in-process or as
a Ray Train ``TorchTrainer``) and the worker publishes it atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from w2s_ray.analysis.metrics import accuracy
from w2s_ray.config import TrainConfig, to_dict
from w2s_ray.pipeline.cache import StageCache, stage_key
from w2s_ray.pipeline.crossfit import DEFAULT_FOLDS, assemble, fold_ids, fold_split
from w2s_ray.pipeline.data import PreparedData
from w2s_ray.train.executor import Executor
from w2s_ray.train.job import EpochMetrics, TrainJob
from w2s_ray.weak_labels import LabelContext, WeakLabels

PROBE_FORMAT = "cached-activations-1"  # in probe stages' keys; bump when the probe fit changes


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
    activations: Any = None  # SplitActivations for probe stages (built on first use if None)
    probe_threads: int = 1  # torch threads of an in-process probe fit

    # -- generic ------------------------------------------------------------
    def _run(self, kind: str, model: str, cfg: TrainConfig, train_split: str, rows: np.ndarray,
             targets: np.ndarray, predict: list[str], monitor: dict, upstream: dict,
             meta: dict | None = None, epoch_metrics: EpochMetrics | None = None,
             reports_per_epoch: int = 1) -> StageResult:
        """Reuse the cached stage or train it. The key covers what determines the outputs; ``meta``
        (ledger and metrics labels), ``epoch_metrics`` (extra per-epoch reports) and
        ``reports_per_epoch`` (mid-epoch progress reports) stay out of it.
        A probe fit runs in this process and reports no epochs, so ``epoch_metrics`` is not called."""
        payload = {
            "data": self.data.fingerprint, "model": model, "train": to_dict(cfg), "train_split": train_split,
            "rows": rows.tolist(), "targets": np.round(targets, 12).tolist(), "predict": sorted(predict),
            "upstream": upstream,
        }
        if cfg.mode == "probe":  # a head on cached activations: not the old body-in-the-loop probe
            payload["probe"] = PROBE_FORMAT
        key = stage_key(kind, payload)
        found = self.cache.get(kind, key)
        if found is None and cfg.mode == "probe":
            found = self._run_probe(kind, key, model, cfg, train_split, rows, targets, predict, monitor,
                                    {"task": self.data.task, **self.trial_meta, **(meta or {})})
        if found is None:
            split = self.data.splits[train_split]
            job = TrainJob(
                stage=kind, model=model, kind=self.data.kind, cfg=cfg,
                train_inputs=[split.inputs[i] for i in rows], train_targets=targets.astype(float).tolist(),
                predict={name: self.data.splits[name].job_view(with_labels=self._labels_visible(kind, name))
                         for name in predict},
                monitor=monitor, cache_uri=self.cache.uri, cache_kind=kind, cache_key=key,
                meta={"task": self.data.task, **self.trial_meta, **(meta or {})}, epoch_metrics=epoch_metrics,
                reports_per_epoch=reports_per_epoch,
            )
            trial = self.trial_meta.get("trial_id")
            self.executor.run(job, name=f"{kind}-{key}" + (f"-{trial}" if trial else ""))
            found = self.cache.get(kind, key)
            if found is None:
                raise RuntimeError(f"stage {kind} {key} finished without publishing its outputs")
        return StageResult(kind, key, found, model, to_dict(cfg))

    def features(self, model: str, cfg: TrainConfig) -> dict[str, np.ndarray]:
        """Cached activations of ``model`` at ``cfg.layer`` per split (extracted on first use)."""
        from w2s_ray.activations import SplitActivations

        acts = self.activations
        if acts is None or acts.max_length != cfg.max_length or acts.pooling != cfg.pooling:
            acts = SplitActivations(self.data, self.cache.uri, cfg.max_length, cfg.pooling)
            self.activations = acts
        return acts.get(model, cfg.layer, self.executor)

    def _run_probe(self, kind: str, key: str, model: str, cfg: TrainConfig, train_split: str, rows: np.ndarray,
                   targets: np.ndarray, predict: list[str], monitor: dict, meta: dict) -> Path:
        """Fit a probe head in this process and publish it like any stage (predictions, metrics, weights)."""
        import pyarrow as pa
        import torch
        from safetensors.torch import save_file

        from w2s_ray.activations import feature_source
        from w2s_ray.train.probe import fit_probe

        feats = self.features(model, cfg)
        started = time.time()
        threads = torch.get_num_threads()
        torch.set_num_threads(self.probe_threads)
        try:
            head, history = fit_probe(feats[train_split][rows], targets, cfg, self.data.kind)
        finally:
            torch.set_num_threads(threads)
        probs = {name: head.probs(feats[name]) for name in {*predict, *(s for s, _ in monitor.values())}}
        for name, (split, labels) in monitor.items():
            ref = np.asarray(labels, dtype=np.float64)
            known = ~np.isnan(ref)
            history[-1][name] = accuracy(probs[split][known], ref[known])
        seconds = time.time() - started

        def build(out: Path) -> None:
            (out / "predictions").mkdir()
            final: dict[str, Any] = {}
            for name in predict:
                columns = {"id": pa.array(self.data.splits[name].ids, pa.string()),
                           "prob": pa.array(probs[name], pa.float64())}
                if self._labels_visible(kind, name):
                    labels = self.data.splits[name].labels
                    columns["label"] = pa.array(labels.astype(np.float64))
                    final[f"{name}_acc"] = accuracy(probs[name], labels)
                pq.write_table(pa.table(columns), out / "predictions" / f"{name}.parquet")
            (out / "checkpoint").mkdir()
            save_file(head.tensors(), str(out / "checkpoint" / "probe.safetensors"))
            source = feature_source(model, cfg.layer)
            (out / "checkpoint" / "model.json").write_text(json.dumps(
                {"model": model, "mode": "probe", "features": {"model": source.model, "layer": source.layer}}))
            metrics = {"stage": kind, "model": model, "final": final, "history": history, "steps": history[-1]["step"],
                       "train_seconds": seconds, "n_train": len(rows), "resumed_from_step": 0,
                       "train_config": to_dict(cfg), "meta": meta, "executor": "in-process probe"}
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
            self.cache.record_training(kind, key, seconds=seconds, steps=history[-1]["step"], probe=True, **meta)

        return self.cache.put(kind, key, build)

    def _labels_visible(self, kind: str, split: str) -> bool:
        """Students never carry test labels: test metrics are computed once, at the end."""
        return not (kind in ("student", "s2s") and split == "test")

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

    def link(self, index: int, model: str, cfg: TrainConfig, source: StageResult,
             folds: int = DEFAULT_FOLDS) -> StageResult:
        """Bootstrap link ``index``: cross-fitted on ``source``'s labels on B over ``folds`` folds.

        Its labels on B are each fold model's held-out predictions; on val and test it predicts
        the mean of its fold models. Keys include ``source``'s key, so chains sharing a prefix
        share links.
        """
        kind = f"bootstrap_{index}"
        labels = source.probs("b")
        ids = fold_ids(len(labels), folds, cfg.seed)
        stages = []
        for fold in range(folds):
            train, _ = fold_split(ids, fold)
            stages.append(self._run(kind, model, cfg, "b", train, labels[train], ["b", *self._eval_splits()],
                                    self._val_monitor(), upstream={"labels_from": source.key, "fold": fold,
                                                                   "folds": folds},
                                    meta={"link": index, "fold": fold}))
        return self._assemble(kind, model, cfg, stages, ids)

    def _assemble(self, kind: str, model: str, cfg: TrainConfig, stages: list[StageResult],
                  ids: np.ndarray) -> StageResult:
        """Publish fold models as one stage: held-out predictions on B, fold-mean predictions elsewhere."""
        import pyarrow as pa

        key = stage_key(kind, {"crossfit": [s.key for s in stages]})

        def build(out: Path) -> None:
            (out / "predictions").mkdir()
            final: dict[str, Any] = {}
            for name in ["b", *self._eval_splits()]:
                per_fold = [s.probs(name) for s in stages]
                probs = assemble(per_fold, ids) if name == "b" else np.mean(per_fold, axis=0)
                labels = self.data.splits[name].labels
                final[f"{name}_acc"] = accuracy(probs, labels)
                pq.write_table(pa.table({"id": pa.array(self.data.splits[name].ids, pa.string()),
                                         "prob": pa.array(probs, pa.float64()),
                                         "label": pa.array(labels.astype(np.float64))}),
                               out / "predictions" / f"{name}.parquet")
            folds = [{"fold": f, "key": s.key, "n_train": int((ids != f).sum() if len(stages) > 1 else len(ids)),
                      "n_labelled": int((ids == f).sum())} for f, s in enumerate(stages)]
            (out / "checkpoint").mkdir()
            (out / "checkpoint" / "folds.json").write_text(json.dumps({"model": model, "folds": folds}, indent=2))
            per = [s.metrics for s in stages]
            metrics = {"stage": kind, "model": model, "final": final, "folds": folds, "train_config": to_dict(cfg),
                       "steps": int(sum(m.get("steps", 0) for m in per)),
                       "train_seconds": float(sum(m.get("train_seconds", 0.0) for m in per)),
                       "executor": "cross-fitted folds"}
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))

        return StageResult(kind, key, self.cache.put(kind, key, build), model, to_dict(cfg))

    def relabel(self, model: str, cfg: TrainConfig, targets: np.ndarray, ids: np.ndarray, upstream: dict,
                meta: dict) -> np.ndarray:
        """Cross-fitted relabelling of B by ``model`` trained with ``cfg`` (strong-to-strong iterations)."""
        folds = int(ids.max()) + 1
        per_fold = []
        for fold in range(folds):
            train, _ = fold_split(ids, fold)
            stage = self._run("s2s", model, cfg, "b", train, targets[train], ["b"], self._val_monitor(),
                              upstream={**upstream, "fold": fold, "folds": folds}, meta={**meta, "fold": fold})
            per_fold.append(stage.probs("b"))
        return assemble(per_fold, ids)

    def student(self, model: str, cfg: TrainConfig, labels_from: StageResult,
                weak_labels: WeakLabels | None = None, weak: StageResult | None = None,
                folds: int = DEFAULT_FOLDS, epoch_metrics: EpochMetrics | None = None,
                reports_per_epoch: int = 1) -> StageResult:
        """Strong student trained on labels from the weak model or last bootstrap link, processed by
        ``weak_labels`` (a registered method; those that fit on B are cross-fitted over ``folds``).

        ``epoch_metrics`` adds to each of the student's epoch reports (a search's objective), and
        ``reports_per_epoch`` k > 1 makes k reports per epoch (finer early-stopping rungs); the
        relabelling stages run without either."""
        weak_labels = weak_labels or WeakLabels()
        probs = labels_from.probs("b")
        ids = fold_ids(len(probs), folds, cfg.seed)
        policy = weak_labels.key(folds)

        def relabel(targets: np.ndarray, iteration: int) -> np.ndarray:
            return self.relabel(model, cfg, targets, ids, {"labels_from": labels_from.key, "policy": policy,
                                                           "iteration": iteration}, {"s2s_iter": iteration})

        ctx = LabelContext(probs, self.data.kind, ids, features=lambda: self.features(model, cfg)["b"],
                           relabel=relabel)
        started = time.time()
        rows, targets = weak_labels.apply(ctx)
        # the method's own fits (kNN, logreg, strong-to-strong folds) are part of this student's
        # training: the ledger records them beside the student's fit (out of the key, like all meta)
        label_seconds = round(time.time() - started, 4)
        ref = weak or labels_from
        monitor = self._val_monitor({"val_acc_weak": ("val", ref.probs("val").tolist())})
        return self._run("student", model, cfg, "b", rows, targets, self._eval_splits(), monitor,
                         upstream={"labels_from": labels_from.key, "policy": policy}, epoch_metrics=epoch_metrics,
                         reports_per_epoch=reports_per_epoch, meta={"label_seconds": label_seconds})

    def select(self, role: str, model: str, base: TrainConfig,
               grid: list[dict]) -> tuple[StageResult, dict, list[dict]]:
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
            acc = accuracy(stage.probs("val")[mask], val[mask])
            table.append({**overrides, "val_acc": acc, "key": stage.key})
            if best is None or acc > best[0]:
                best = (acc, stage, overrides)
        assert best is not None
        return best[1], best[2], table
