"""The training loop's batches: a deterministic shuffle per (seed, epoch), never a last batch of one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2s_ray.config import TrainConfig
from w2s_ray.train.data import Encoded
from w2s_ray.train.loop import LoopState, epoch_batches, fit


@pytest.mark.parametrize("n, batch_size, sizes", [
    (65, 32, [32, 33]),  # 32 + 32 + 1: the single example joins the batch before it
    (64, 32, [32, 32]),
    (66, 32, [32, 32, 2]),
    (5, 2, [2, 3]),
    (1, 32, [1]),  # nothing to merge into
    (3, 1, [1, 1, 1]),  # batches of one were asked for
])
def test_epoch_batches_never_end_on_a_batch_of_one(n, batch_size, sizes):
    chunks = epoch_batches(n, batch_size, seed=3, epoch=1)
    assert [len(c) for c in chunks] == sizes
    assert sorted(np.concatenate(chunks).tolist()) == list(range(n))  # nothing dropped or repeated


def test_epoch_batches_depend_only_on_seed_and_epoch():
    first = epoch_batches(65, 32, seed=3, epoch=1)
    again = epoch_batches(65, 32, seed=3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(epoch_batches(65, 32, seed=3, epoch=2)))
    assert not np.array_equal(np.concatenate(first), np.concatenate(epoch_batches(65, 32, seed=4, epoch=1)))


class _BagOfTokens(torch.nn.Module):
    """A tiny scorer: mean token embedding → one logit."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.out = torch.nn.Linear(4, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.emb(input_ids) * mask).sum(1) / mask.sum(1)
        return self.out(pooled).squeeze(-1)


def _fit(n: int, epochs: int, sizes: list) -> LoopState:
    torch.manual_seed(0)
    model = _BagOfTokens()
    enc = Encoded("classify", [[1 + i % 9, 2] for i in range(n)])
    targets = np.linspace(0.1, 0.9, n)

    def loss(margin: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        sizes.append(len(y))
        return torch.nn.functional.binary_cross_entropy_with_logits(margin, y)

    cfg = TrainConfig(lr=1e-2, epochs=epochs, batch_size=2, seed=7)
    return fit(model, enc, targets, cfg, loss, pad_id=0)


def test_fit_never_trains_on_a_last_batch_of_one():
    sizes: list[int] = []
    state = _fit(5, epochs=2, sizes=sizes)
    assert sizes == [2, 3, 2, 3]
    assert state.step == 4 and [h["step"] for h in state.history] == [2, 4]


@pytest.mark.parametrize("steps, k, marks", [
    (10, 1, set()), (10, 2, {5}), (10, 4, {2, 5, 8}), (3, 2, {2}), (1, 2, set()), (2, 4, {1}),
])
def test_progress_steps_cut_the_epoch_into_near_equal_parts(steps, k, marks):
    from w2s_ray.train.loop import progress_steps

    assert progress_steps(steps, k) == marks


def test_mid_epoch_progress_reports_change_nothing_the_loop_trains():
    def run(k: int) -> tuple[LoopState, dict, list[tuple[int, int]]]:
        torch.manual_seed(0)
        model = _BagOfTokens()
        enc = Encoded("classify", [[1 + i % 9, 2] for i in range(20)])
        cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=2, seed=7)
        seen: list[tuple[int, int]] = []

        def progress(st: LoopState, mdl: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
            seen.append((st.epoch, st.step))

        state = fit(model, enc, np.linspace(0.1, 0.9, 20), cfg,
                    lambda m, y, p: torch.nn.functional.binary_cross_entropy_with_logits(m, y), pad_id=0,
                    on_progress=progress, reports_per_epoch=k)
        return state, {n: t.detach().clone() for n, t in model.state_dict().items()}, seen

    plain, plain_weights, none = run(1)
    halves, half_weights, seen = run(2)
    assert none == [] and seen == [(0, 5), (1, 15)]  # 10 steps per epoch: one report mid-way through each
    assert [h["train_loss"] for h in halves.history] == [h["train_loss"] for h in plain.history]
    assert all(torch.equal(plain_weights[n], half_weights[n]) for n in plain_weights)
