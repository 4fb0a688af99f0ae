"""Probe heads on fixed features: as good as logistic regression, pairwise, every loss, tiny batches."""

from __future__ import annotations

import numpy as np
import pytest

from w2s_ray.config import TrainConfig
from w2s_ray.losses import LOSSES
from w2s_ray.train.probe import _batches, fit_probe


def blobs(n: int, d: int, seed: int, noise: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian classes with unequally scaled features (so standardising matters)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    direction = rng.normal(size=d)
    x = rng.normal(scale=noise, size=(n, d)) + np.outer(2 * y - 1, direction) * 0.4
    return (x * rng.uniform(0.1, 10, size=d)).astype(np.float32), y.astype(np.float64)


@pytest.mark.parametrize("c", [0.01, 1.0])
def test_probe_matches_logistic_regression_with_the_same_l2(c):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = blobs(1400, 40, seed=3)
    xtr, ytr, xte, yte = x[:800], y[:800], x[800:], y[800:]
    scaler = StandardScaler().fit(xtr)
    ref = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(xtr), ytr)
    ref_acc = (ref.predict(scaler.transform(xte)) == yte).mean()
    cfg = TrainConfig(lr=1e-2, epochs=60, batch_size=64, weight_decay=1.0 / (c * len(xtr)), loss="xent")
    head, history = fit_probe(xtr, ytr, cfg, "classify")
    acc = ((head.probs(xte) > 0.5) == yte).mean()
    assert abs(acc - ref_acc) <= 0.01, (acc, ref_acc)
    assert len(history) == cfg.epochs and history[-1]["train_loss"] < history[0]["train_loss"]
    if c <= 0.01:  # strongly regularised: the same penalty gives nearly the same weights' norm
        assert np.linalg.norm(head.weight) == pytest.approx(np.linalg.norm(ref.coef_), rel=0.1)


def test_stronger_l2_shrinks_the_probe():
    x, y = blobs(600, 20, seed=1)
    norms = [np.linalg.norm(fit_probe(x, y, TrainConfig(lr=1e-2, epochs=30, weight_decay=wd), "classify")[0].weight)
             for wd in (1e-4, 1e-1, 10.0)]
    assert norms[0] > norms[1] > norms[2]


def test_pairwise_probe_scores_the_difference_of_the_two_texts():
    rng = np.random.default_rng(0)
    w = rng.normal(size=16)
    a, b = rng.normal(size=(500, 16)), rng.normal(size=(500, 16))
    y = ((a - b) @ w > 0).astype(np.float64)
    x = np.stack([a, b], axis=1).astype(np.float32)  # [n, 2, d]
    head, _ = fit_probe(x[:400], y[:400], TrainConfig(lr=1e-2, epochs=40, loss="bt", weight_decay=1e-4), "pairwise")
    p = head.probs(x[400:])
    assert ((p > 0.5) == y[400:]).mean() > 0.9
    swapped = head.probs(x[400:, ::-1])
    np.testing.assert_allclose(p + swapped, 1.0, atol=1e-6)  # r(a) - r(b): no bias, order-antisymmetric
    assert head.bias == 0.0


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_registered_loss_fits_a_probe(loss):
    kind = "classify" if "classify" in LOSSES[loss].kinds else "pairwise"
    x, y = blobs(300, 8, seed=2)
    if kind == "pairwise":
        x = np.stack([x, x[::-1]], axis=1)
        y = (y > y[::-1]).astype(np.float64)
    soft = np.clip(y * 0.8 + 0.1, 0, 1)  # soft weak labels
    head, history = fit_probe(x, soft, TrainConfig(lr=1e-2, epochs=5, loss=loss), kind)
    assert np.isfinite(head.weight).all() and not history[-1].get("diverged")
    assert ((head.probs(x) > 0.5) == (y > 0.5)).mean() > 0.6


def test_a_trailing_batch_of_one_joins_the_previous_batch():
    sizes = [len(b) for b in _batches(np.arange(65), 32)]
    assert sizes == [32, 33]
    assert [len(b) for b in _batches(np.arange(64), 32)] == [32, 32]
    assert [len(b) for b in _batches(np.arange(1), 32)] == [1]


def test_probe_fit_is_reproducible_for_a_seed():
    x, y = blobs(200, 8, seed=5)
    cfg = TrainConfig(lr=1e-2, epochs=5, seed=7)
    first, _ = fit_probe(x, y, cfg, "classify")
    again, _ = fit_probe(x, y, cfg, "classify")
    other, _ = fit_probe(x, y, cfg.replace(seed=8), "classify")
    np.testing.assert_array_equal(first.weight, again.weight)
    assert not np.array_equal(first.weight, other.weight)  # the seed sets the data order
