"""Linear probes on cached activations: the head every role trains in ``mode: probe``.

A probe standardises the features with the training rows' mean and standard deviation, then
fits ``logit = z @ w + b`` (pairs: ``r(a) - r(b) = (z_a - z_b) @ w``, the bias cancels) with
the registered loss, Adam, the same linear learning-rate decay as fine-tuning, and an L2
penalty ``weight_decay / 2 * ||w||^2`` added to the mean loss. That penalty matches
scikit-learn's ``LogisticRegression(C)`` at ``weight_decay = 1 / (C * n)``. Fits take well under
a second on CPU, so they run in the calling process, never as a Ray Train worker group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from w2s_ray.config import TrainConfig
from w2s_ray.losses import make_loss


@dataclass
class ProbeHead:
    """A fitted probe: standardisation plus a linear score."""

    weight: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    pairwise: bool

    def margins(self, x: np.ndarray) -> np.ndarray:
        """Logits (single texts, x: [n, d]) or reward margins (pairs, x: [n, 2, d])."""
        z = (np.asarray(x, dtype=np.float32) - self.mean) / self.scale
        if self.pairwise:
            return (z[:, 0] - z[:, 1]) @ self.weight
        return z @ self.weight + self.bias

    def probs(self, x: np.ndarray) -> np.ndarray:
        """p(label 1) (or p(text_a preferred)) per row, float64."""
        return 1.0 / (1.0 + np.exp(-self.margins(x).astype(np.float64)))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": torch.from_numpy(self.weight), "bias": torch.tensor([self.bias], dtype=torch.float32),
                "mean": torch.from_numpy(self.mean), "scale": torch.from_numpy(self.scale)}


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a trailing batch of one row joins the one before it."""
    parts = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [np.concatenate(parts[-2:])]
    return parts


def fit_probe(x: np.ndarray, targets: np.ndarray, cfg: TrainConfig, kind: str) -> tuple[ProbeHead, list[dict]]:
    """Fit a probe on features ``x`` ([n, d] or pairs [n, 2, d]) and soft ``targets``; returns (head, history)."""
    pairwise = kind == "pairwise"
    feats = np.asarray(x, dtype=np.float32)
    flat = feats.reshape(-1, feats.shape[-1])
    mean = flat.mean(0)
    scale = flat.std(0) + 1e-6
    z = torch.from_numpy((feats - mean) / scale)
    inputs = z[:, 0] - z[:, 1] if pairwise else z
    y = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    weight = torch.zeros(inputs.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    params = [weight] if pairwise else [weight, bias]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    loss_fn = make_loss(cfg.loss, cfg.loss_params, kind)
    n = len(inputs)
    per_epoch = len(_batches(np.arange(n), cfg.batch_size))
    total, step = max(1, per_epoch * cfg.epochs), 0
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        losses = []
        for idx in _batches(order, cfg.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * max(0.0, 1.0 - step / total)
            rows = torch.as_tensor(idx)
            margin = inputs[rows] @ weight + (0.0 if pairwise else bias)
            loss = loss_fn(margin, y[rows], step / total) + 0.5 * cfg.weight_decay * (weight * weight).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses))})
    head = ProbeHead(weight.detach().numpy().copy(), 0.0 if pairwise else float(bias.detach()[0]),
                     mean, scale, pairwise)
    if not (math.isfinite(float(np.abs(head.weight).sum())) and math.isfinite(head.bias)):
        head.weight[:], head.bias = 0.0, 0.0  # a diverged fit predicts 0.5 everywhere: scored, not crashed
        history[-1]["diverged"] = True
    return head, history
