"""The training worker: the same function runs in-process or as a Ray Train worker.

``train_worker(job_dict)`` builds the model, trains it (resuming from the latest Ray Train
checkpoint when a retried worker finds one), reports per-epoch metrics with
``ray.train.report`` and, on rank 0, predicts the requested splits and publishes the
outputs (predictions parquet, metrics JSON, weights) atomically into the stage cache.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from w2s_ray.analysis.metrics import accuracy
from w2s_ray.faults import fault_point
from w2s_ray.losses import make_loss
from w2s_ray.models import build_model
from w2s_ray.models.device import placement, work_device
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.train.data import encode
from w2s_ray.train.job import TrainJob
from w2s_ray.train.loop import LoopState, epoch_batches, fit, make_optimizer, predict

CKPT_FILE = "train_state.pt"


class _LocalContext:
    """Stand-in for Ray Train's context when a job runs in-process."""

    rank = 0
    world_size = 1
    resumable = False  # nothing retries an in-process run from a checkpoint, so none is written

    def __init__(self) -> None:
        self.reports: list[dict] = []

    def checkpoint_dir(self) -> Path | None:
        return None

    def report(self, metrics: dict, ckpt_dir: Path | None) -> None:
        self.reports.append(metrics)


class _RayContext:
    """Ray Train V2: ranks, checkpoints and reports."""

    resumable = True

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self._ckpt = ray.train.get_checkpoint()
        self._restored: Path | None = None

    def checkpoint_dir(self) -> Path | None:
        if self._ckpt is None:
            return None
        if self._restored is None:
            self._restored = Path(tempfile.mkdtemp(prefix="w2s-restore-"))
            self._ckpt.to_directory(str(self._restored))
        return self._restored

    def report(self, metrics: dict, ckpt_dir: Path | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)


def _in_ray_train() -> bool:
    try:
        import ray.train

        ray.train.get_context().get_world_rank()
        return True
    except Exception:
        return False


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model  # type: ignore[return-value]  # DDP's .module


def _weights(model: torch.nn.Module, mode: str) -> dict[str, torch.Tensor]:
    """Everything for finetune; only trainable tensors (head, adapters) for probe/LoRA."""
    named = dict(model.named_parameters())
    state = model.state_dict()
    if mode != "finetune":
        state = {k: v for k, v in state.items() if k in named and named[k].requires_grad}
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def train_worker(job_dict: dict[str, Any]) -> None:
    """Ray Train ``train_loop_per_worker``; also called directly for in-process runs."""
    job = TrainJob.from_dict(job_dict)
    ctx = _RayContext() if _in_ray_train() else _LocalContext()
    run_job(job, ctx)


def run_job(job: TrainJob, ctx: _LocalContext | _RayContext) -> None:
    """Train ``job`` under ``ctx`` (in-process or a Ray Train worker) and publish it from rank 0."""
    started = time.time()
    cfg = job.cfg
    if job.threads:
        torch.set_num_threads(job.threads)
    torch.manual_seed(cfg.seed)
    model, tokenizer = build_model(job.model, mode=cfg.mode, pooling=cfg.pooling, lora_r=cfg.lora_r, seed=cfg.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    enc = encode(tokenizer, job.train_inputs, job.kind, cfg.max_length)
    targets = np.asarray(job.train_targets, dtype=np.float32)
    if isinstance(ctx, _RayContext):  # moves to this worker's device; DDP when several workers
        import ray.train.torch

        if ctx.world_size > 1:  # each rank trains on its own shard; DDP averages gradients
            shard = np.arange(ctx.rank, len(enc), ctx.world_size)
            enc, targets = enc.subset(shard), targets[shard]
        # the CPU when this torch cannot use the GPU Ray assigned (CPU build, no driver)
        model = ray.train.torch.prepare_model(  # type: ignore[assignment]  # DDP-wrapped ScoreModel
            model, move_to_device=work_device(in_ray_train=True))
    where = placement(next(model.parameters()).device)
    monitor_enc = {
        split: encode(tokenizer, job.predict[split]["inputs"], job.kind, cfg.max_length)
        for split in {s for s, _ in job.monitor.values()}
    }
    loss_fn = make_loss(cfg.loss, cfg.loss_params, job.kind)
    optimizer = make_optimizer(model, cfg)
    state = LoopState()
    resumed_from = _restore(ctx.checkpoint_dir(), model, optimizer, state)

    def monitored(mdl: torch.nn.Module, metrics: dict[str, Any]) -> None:
        """Add the monitored accuracies and the caller's epoch metrics (rank 0 only)."""
        probs = {split: predict(_unwrap(mdl), split_enc, cfg.batch_size, pad_id)
                 for split, split_enc in monitor_enc.items()}
        for name, (split, labels) in job.monitor.items():
            ref = np.asarray(labels, dtype=np.float64)
            known = ~np.isnan(ref)  # hidden GT labels (--val-labels cap) are NaN
            metrics[name] = accuracy(probs[split][known], ref[known])
        if job.epoch_metrics is not None:  # the caller's own metrics, e.g. a search's objective
            metrics.update(job.epoch_metrics(metrics, probs))

    steps_per_epoch = max(1, len(epoch_batches(len(enc), cfg.batch_size, cfg.seed, 0)))  # as fit() counts them

    def on_progress(st: LoopState, mdl: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        """A mid-epoch report for early stopping: monitored metrics, no checkpoint, no history entry."""
        metrics: dict[str, Any] = {"epoch": st.epoch + (st.step - st.epoch * steps_per_epoch) / steps_per_epoch,
                                   "step": st.step, "stage": job.stage, "resumed_from_step": resumed_from,
                                   "mid_epoch": 1}
        if ctx.rank == 0:
            monitored(mdl, metrics)
        ctx.report(metrics, None)

    last_checkpoint = [time.monotonic()]

    def on_epoch_end(st: LoopState, mdl: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        metrics = dict(st.history[-1], stage=job.stage, resumed_from_step=resumed_from)
        ckpt_dir = None
        if ctx.rank == 0:
            monitored(mdl, metrics)
            st.history[-1].update({k: v for k, v in metrics.items() if k.startswith("val_")})
            if checkpoint_due(job.checkpoint_interval_s, ctx.resumable, time.monotonic() - last_checkpoint[0]):
                last_checkpoint[0] = time.monotonic()
                ckpt_dir = Path(tempfile.mkdtemp(prefix="w2s-ckpt-"))
                torch.save(
                    {"model": _weights(_unwrap(mdl), cfg.mode), "optimizer": opt.state_dict(),
                     "state": {"epoch": st.epoch, "step": st.step, "history": st.history}},
                    ckpt_dir / CKPT_FILE,
                )
        ctx.report(metrics, ckpt_dir)
        if ckpt_dir is not None:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        fault_point(f"worker.{job.stage}.after_epoch_{st.epoch}")

    fit(model, enc, targets, cfg, loss_fn, pad_id, optimizer=optimizer, state=state, on_epoch_end=on_epoch_end,
        on_progress=on_progress if job.reports_per_epoch > 1 else None, reports_per_epoch=job.reports_per_epoch)
    if ctx.rank == 0 and job.cache_uri:
        _publish(job, _unwrap(model), tokenizer, pad_id, state, time.time() - started, resumed_from,
                 where)


def checkpoint_due(interval_s: float, resumable: bool, since_last_s: float) -> bool:
    """Whether an epoch's end writes a resumable checkpoint (weights and optimizer state).

    Only where a retried worker can resume from it (Ray Train), and only once ``interval_s``
    seconds of training would otherwise be lost (0: every epoch). A short training is cheaper to
    redo than its checkpoints (three times the weights per epoch) are to write.
    """
    return resumable and (interval_s <= 0 or since_last_s >= interval_s)


def _restore(ckpt_dir: Path | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: LoopState) -> int:
    """Load a Ray Train checkpoint into model/optimizer/state; returns the step resumed from."""
    if ckpt_dir is None or not (ckpt_dir / CKPT_FILE).exists():
        return 0
    blob = torch.load(ckpt_dir / CKPT_FILE, map_location="cpu", weights_only=False)
    if ckpt_dir.name.startswith("w2s-restore-"):  # our local copy of the Ray Train checkpoint: loaded, so drop it
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    _unwrap(model).load_state_dict(blob["model"], strict=False)
    optimizer.load_state_dict(blob["optimizer"])
    state.epoch, state.step = blob["state"]["epoch"], blob["state"]["step"]
    state.history = list(blob["state"]["history"])
    return state.step


def _publish(job: TrainJob, model: torch.nn.Module, tokenizer: Any, pad_id: int, state: LoopState, seconds: float,
             resumed_from: int, where: dict[str, Any] | None = None) -> None:
    cache = StageCache(job.cache_uri)
    out = cache.staging_dir(job.cache_kind, job.cache_key)
    try:
        (out / "predictions").mkdir()
        final: dict[str, Any] = {}
        for split, spec in job.predict.items():
            probs = predict(model, encode(tokenizer, spec["inputs"], job.kind, job.cfg.max_length),
                            job.cfg.batch_size, pad_id)
            labels = spec.get("labels")
            columns = {"id": pa.array(spec["ids"], pa.string()), "prob": pa.array(probs, pa.float64())}
            if labels is not None:
                columns["label"] = pa.array(np.asarray(labels, dtype=np.float64))
                final[f"{split}_acc"] = accuracy(probs, np.asarray(labels))
            pq.write_table(pa.table(columns), out / "predictions" / f"{split}.parquet")
        if job.save_weights:
            from safetensors.torch import save_file

            (out / "checkpoint").mkdir()
            save_file(_weights(model, job.cfg.mode), str(out / "checkpoint" / "model.safetensors"))
            (out / "checkpoint" / "model.json").write_text(json.dumps({"model": job.model, "mode": job.cfg.mode}))
        metrics = {
            "stage": job.stage, "model": job.model, "final": final, "history": state.history,
            "steps": state.step, "train_seconds": seconds, "n_train": len(job.train_inputs),
            "resumed_from_step": resumed_from, "train_config": _cfg_dict(job), "meta": job.meta,
            "placement": where or {},
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        fault_point(f"stage.{job.stage}.before_publish")
        cache.record_training(job.stage, job.cache_key, seconds=seconds, steps=state.step, **job.meta)
        cache.publish(out, job.cache_kind, job.cache_key)
    finally:
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)


def _cfg_dict(job: TrainJob) -> dict:
    from w2s_ray.config import to_dict

    return to_dict(job.cfg)
