"""Cross-fitting over folds of split B: no model labels a row it was trained on.

Split B is dealt into K seeded folds. A cross-fitted relabelling trains one model per fold on
the other K - 1 folds and keeps its predictions on the held-out fold only; the labels of B are
the concatenation of those held-out predictions. ``K = 1`` is self-labelling (train on all of
B, label all of B): kept only so tests can measure what cross-fitting buys.
"""

from __future__ import annotations

import numpy as np

DEFAULT_FOLDS = 2


def fold_ids(n: int, k: int, seed: int) -> np.ndarray:
    """Fold of each of ``n`` rows (0..k-1), balanced and deterministic for ``(n, k, seed)``."""
    if k < 1:
        raise ValueError(f"cross-fitting needs at least one fold, got {k}")
    order = np.random.default_rng([seed, k, n]).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) % k
    return out


def fold_split(folds: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of ``fold``; with one fold both are every row (self-labelling)."""
    k = int(folds.max()) + 1 if len(folds) else 1
    held = np.flatnonzero(folds == fold)
    train = np.arange(len(folds)) if k == 1 else np.flatnonzero(folds != fold)
    return train, held


def assemble(per_fold: list[np.ndarray], folds: np.ndarray) -> np.ndarray:
    """Labels of every row from its own fold's model: ``per_fold[f]`` predicts all rows."""
    out = np.empty(len(folds), dtype=np.float64)
    for fold, probs in enumerate(per_fold):
        held = folds == fold
        out[held] = np.asarray(probs, dtype=np.float64)[held]
    return out
