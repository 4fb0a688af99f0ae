"""The training loop: plain PyTorch, no Ray. A Ray Train worker wraps it unchanged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from w2s_ray.config import TrainConfig
from w2s_ray.train.data import Encoded, batches, length_order


@dataclass
class LoopState:
    """What a checkpoint must hold to resume mid-training."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[dict] = field(default_factory=list)


EpochHook = Callable[[LoopState, torch.nn.Module, torch.optim.Optimizer], None]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def scores_to_margin(scores: torch.Tensor, n: int, kind: str) -> torch.Tensor:
    """Classify: the score is the logit. Pairwise: r(a) - r(b), pairs stacked as [a..., b...]."""
    return scores[:n] - scores[n:] if kind == "pairwise" else scores


@torch.no_grad()
def predict(model: torch.nn.Module, enc: Encoded, batch_size: int, pad_id: int) -> np.ndarray:
    """p(label = 1) (classify) or p(a preferred) (pairwise) for every example, in input order."""
    was_training = model.training
    model.eval()
    out = np.zeros(len(enc), dtype=np.float64)
    device = _device(model)
    for idx, batch in batches(enc, length_order(enc), batch_size * 2, pad_id):
        margin = scores_to_margin(model(**_to(batch, device)).float(), len(idx), enc.kind)
        out[idx] = torch.sigmoid(margin).double().cpu().numpy()
    model.train(was_training)
    return out


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Row indices of each training batch of epoch ``epoch``: a shuffle that depends only on (seed, epoch).

    Batches of ``batch_size`` in shuffled order, except that a last batch of a single example is
    merged into the one before it (a batch of one gives a noisy step and no batch statistics,
    e.g. for logconf's prior-quantile hardening); no example is dropped. ``batch_size = 1`` is
    left as asked.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    chunks = [order[start : start + batch_size] for start in range(0, n, batch_size)]
    if batch_size > 1 and len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


def progress_steps(steps_per_epoch: int, reports_per_epoch: int) -> set[int]:
    """Steps within an epoch (1-based) after which a mid-epoch report is made: the k − 1 points
    that cut the epoch into ``reports_per_epoch`` near-equal parts (fewer when the epoch has fewer steps)."""
    k = max(1, reports_per_epoch)
    return {round(i * steps_per_epoch / k) for i in range(1, k)} - {0, steps_per_epoch}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def fit(
    model: torch.nn.Module,
    enc: Encoded,
    targets: np.ndarray,
    cfg: TrainConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor],
    pad_id: int,
    optimizer: torch.optim.Optimizer | None = None,
    state: LoopState | None = None,
    on_epoch_end: EpochHook | None = None,
    on_progress: EpochHook | None = None,
    reports_per_epoch: int = 1,
) -> LoopState:
    """Train for ``cfg.epochs`` epochs (resuming from ``state``), with a linear LR decay.

    The batches of epoch ``e`` depend only on (seed, e) (:func:`epoch_batches`), so a resumed
    run sees the same order as an uninterrupted one. With ``reports_per_epoch`` k > 1,
    ``on_progress`` is also called k − 1 times inside each epoch, after the steps
    :func:`progress_steps` names (``state.epoch`` is then still the epochs completed).
    """
    state = state or LoopState()
    optimizer = optimizer or make_optimizer(model, cfg)
    steps_per_epoch = max(1, len(epoch_batches(len(enc), cfg.batch_size, cfg.seed, 0)))
    total = steps_per_epoch * cfg.epochs
    device = _device(model)
    y_all = torch.as_tensor(np.asarray(targets, dtype=np.float32), device=device)
    model.train()
    marks = progress_steps(steps_per_epoch, reports_per_epoch) if on_progress is not None else set()
    for epoch in range(state.epoch, cfg.epochs):
        losses = []
        for in_epoch, chunk in enumerate(epoch_batches(len(enc), cfg.batch_size, cfg.seed, epoch), start=1):
            idx, batch = next(batches(enc, chunk, len(chunk), pad_id))
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * max(0.0, 1.0 - state.step / total)
            margin = scores_to_margin(model(**_to(batch, device)).float(), len(idx), enc.kind)
            loss = loss_fn(margin, y_all[torch.as_tensor(idx, device=device)], state.step / total)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            state.step += 1
            losses.append(float(loss.detach()))
            if in_epoch in marks and on_progress is not None:
                on_progress(state, model, optimizer)
        state.epoch = epoch + 1
        state.history.append({"epoch": state.epoch, "step": state.step, "train_loss": float(np.mean(losses))})
        if on_epoch_end is not None:
            on_epoch_end(state, model, optimizer)
    return state
