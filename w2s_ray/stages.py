"""The weak-to-strong stages: weak, ceiling, bootstrap links and student, each cached.

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

from w2s_ray.cache import StageCache, stage_key
from w2s_ray.config import TrainConfig, to_dict
from w2s_ray.data import PreparedData
from w2s_ray.metrics import accuracy
from w2s_ray.train.executor import Executor
from w2s_ray.train.job import TrainJob


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
    activations: Any = None  # SplitActivations for probe stages (built on first use if None)
    probe_threads: int = 1  # torch threads of an in-process probe fit

    # -- generic ------------------------------------------------------------
    def _run(self, kind: str, model: str, cfg: TrainConfig, train_split: str, rows: np.ndarray,
             targets: np.ndarray, predict: list[str], monitor: dict, upstream: dict, meta: dict | None = None) -> StageResult:
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
                       "train_seconds": seconds, "n_train": int(len(rows)), "resumed_from_step": 0,
                       "train_config": to_dict(cfg), "meta": meta, "executor": "in-process probe"}
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
            self.cache.record_training(kind, key, seconds=seconds, steps=history[-1]["step"], probe=True,
                                       **{k: v for k, v in meta.items() if k != "objective"})

        return self.cache.put(kind, key, build)

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
            acc = accuracy(stage.probs("val")[mask], val[mask])
            table.append({**overrides, "val_acc": acc, "key": stage.key})
            if best is None or acc > best[0]:
                best = (acc, stage, overrides)
        assert best is not None
        return best[1], best[2], table
