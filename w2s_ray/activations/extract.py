"""Extraction of frozen activations: one job, run in-process or as a Ray Train ``TorchTrainer``.

Why Ray Train (and not Ray Data batch inference): the job is the same shape as a training
(one model, a list of token ids, outputs published into the stage cache), so it reuses the
executor, the scaling config (GPUs, CPUs per worker), retries and the search's resource
accounting unchanged, and several workers shard the texts by rank with no extra code. The
driver tokenizes once and ships token ids; workers only run the frozen body.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ExtractJob:
    """Texts (as token ids) whose pooled hidden states a worker computes and publishes."""

    model: str
    pooling: str
    max_length: int
    mkey: str
    token_ids: list[list[int]]
    keys: list[str]  # hex per-text keys, aligned with token_ids
    cache_uri: str
    batch_size: int = 64
    threads: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    stage = "activations"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExtractJob":
        return cls(**data)

    @staticmethod
    def entrypoint() -> Callable[[dict[str, Any]], None]:
        return extract_worker


def extract_worker(job_dict: dict[str, Any]) -> None:
    """Ray Train ``train_loop_per_worker`` (also called in-process): extract, then publish."""
    rank, world = 0, 1
    try:
        import ray.train

        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
    except Exception:  # noqa: BLE001  (in-process: no Ray Train context)
        pass
    job = ExtractJob.from_dict(job_dict)
    mine = list(range(rank, len(job.token_ids), world))
    if mine:
        run_extraction(job, mine)


def run_extraction(job: ExtractJob, rows: list[int]) -> None:
    """Pooled hidden states of ``rows`` at every layer, published as one shard."""
    import torch

    from w2s_ray.activations.store import ActivationStore
    from w2s_ray.models import POOLINGS, build_model
    from w2s_ray.pipeline.cache import StageCache
    from w2s_ray.train.data import _pad

    if job.threads:
        torch.set_num_threads(job.threads)
    started = time.time()
    model, tokenizer = build_model(job.model, mode="probe", pooling=job.pooling)
    from w2s_ray.models.device import work_device

    device = work_device()  # the CPU when this torch cannot use the GPU Ray assigned
    body = model.body.to(device).eval()
    pool = POOLINGS[model.pooling]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs = [job.token_ids[i] for i in rows]
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out: np.ndarray | None = None
    done, next_report = 0, 0.1
    with torch.inference_mode():
        for start in range(0, len(order), job.batch_size):
            idx = order[start: start + job.batch_size]
            ids, mask = _pad([seqs[i] for i in idx], pad_id)
            ids, mask = ids.to(device), mask.to(device)
            hidden = body(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            pooled = torch.stack([pool(h, mask) for h in hidden], dim=1).float().cpu().numpy()
            if out is None:
                out = np.empty((len(seqs), *pooled.shape[1:]), dtype=np.float16)
            out[idx] = pooled
            done += len(idx)
            if done / len(seqs) >= next_report or done == len(seqs):
                rate = done / max(time.time() - started, 1e-9)
                print(f"activations {job.model}: {done}/{len(seqs)} texts ({100 * done / len(seqs):.0f}%), "
                      f"{rate:.1f} texts/s", flush=True)
                next_report += 0.1
    assert out is not None
    cache = StageCache(job.cache_uri)
    keys = [bytes.fromhex(job.keys[i]) for i in rows]
    seconds = time.time() - started
    ActivationStore(cache, job.mkey).publish(keys, out, {"model": job.model, "pooling": job.pooling,
                                                         "max_length": job.max_length, "texts": len(rows),
                                                         "seconds": seconds, **job.meta})
    cache.record_training("activations", job.mkey, seconds=seconds, texts=len(rows), model=job.model)
