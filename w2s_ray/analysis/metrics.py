"""Evaluation metrics: accuracy, agreement, performance gap recovered (PGR) and misfit.

All functions take ``p(label = 1)`` per example (``sigmoid`` of the model's score; for pairs,
``p(a preferred) = sigmoid(r_a - r_b)``). A hard prediction is ``p > 0.5``; a tie (``p``
exactly 0.5, e.g. a margin of exactly 0) is no prediction and scores as a fair coin flip: half
credit against any label, so a model that ties everything scores 0.5 whatever the class balance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from w2s_ray.errors import UserError

# Absolute slack when comparing the weak-ceiling gap to min_gap, so that a gap that is
# min_gap in exact arithmetic (e.g. 0.72 - 0.70) is not called undefined by float rounding.
_GAP_SLACK = 1e-9

# Default number of standard errors the weak-ceiling gap must exceed for PGR to be defined.
# About a one-sided 98% test that the ceiling really beats the weak model on this split.
GAP_Z = 2.0


def _as_pair(a: Any, b: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"{what}: {a.shape[0]} vs {b.shape[0]} examples")
    if a.size == 0:
        raise ValueError(f"{what}: no examples")
    return a, b


def hard(probs: Any) -> np.ndarray:
    """Hard 0/1 predictions ``probs > 0.5`` (also turns soft labels into hard ones); ties give 0.

    For scoring use :func:`accuracy`, :func:`agreement` or :func:`match`, which count a tie as half.
    """
    return (np.asarray(probs, dtype=np.float64) > 0.5).astype(np.int64)


def vote(probs: Any) -> np.ndarray:
    """Per example: 1.0 where ``p > 0.5``, 0.0 where ``p < 0.5`` and 0.5 for a tie (``p == 0.5``)."""
    p = np.asarray(probs, dtype=np.float64)
    return np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))


def match(p: Any, q: Any) -> np.ndarray:
    """Per-example credit for ``p``'s hard prediction matching ``q``'s: 1, 0, or 0.5 where either ties.

    It is the chance the two agree when each tie is broken by a fair coin.
    """
    a, b = vote(p), vote(q)
    return a * b + (1.0 - a) * (1.0 - b)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of examples where ``probs > 0.5`` matches the label (soft labels thresholded at 0.5).

    A tie (``p == 0.5``, or a soft label of exactly 0.5) counts as half right. For pairs
    (``probs = sigmoid(r_a - r_b)``, label 1 when a was chosen) this is the share of pairs where
    r(chosen) > r(rejected), a tied margin counting half.
    """
    probs, labels = _as_pair(probs, labels, "accuracy")
    return float(np.mean(match(probs, labels)))


def agreement(p: np.ndarray, q: np.ndarray) -> float:
    """Share of examples where the hard predictions of ``p`` and ``q`` agree (a tie counts half)."""
    p, q = _as_pair(p, q, "agreement")
    return float(np.mean(match(p, q)))


@dataclass(frozen=True)
class PGR:
    """Performance gap recovered, ``(student - weak) / (ceiling - weak)``.

    ``value`` is None (and ``reason`` says why) when the weak-ceiling gap is too small for the
    ratio to mean anything; ``gap`` = ceiling - weak is always reported, and ``gap_se`` (its
    paired standard error) when it was known.
    """

    value: float | None
    reason: str | None
    gap: float
    gap_se: float | None = None

    @property
    def defined(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gap_standard_error(weak_probs: Any, ceiling_probs: Any, labels: Any) -> float:
    """Paired standard error of ``accuracy(ceiling) - accuracy(weak)`` on the same examples.

    With ``d_i = [ceiling right on i] - [weak right on i]`` it is ``std(d, ddof=1) / sqrt(n)``:
    examples both models get right (or wrong) add no noise, so two models that mostly agree
    can show a small gap that is still real. Infinite for fewer than two examples.
    """
    w, labels_w = _as_pair(weak_probs, labels, "gap_standard_error")
    c, _ = _as_pair(ceiling_probs, labels, "gap_standard_error")
    d = match(c, labels_w) - match(w, labels_w)  # ties count half, as in accuracy
    if d.size < 2:
        return math.inf
    return float(np.std(d, ddof=1) / math.sqrt(d.size))


def pgr(weak: float, student: float, ceiling: float, min_gap: float = 0.02,
        gap_se: float | None = None, gap_z: float = GAP_Z) -> PGR:
    """PGR of ``student`` given ``weak`` and ``ceiling`` scores (accuracies, same split).

    Undefined (``value`` None, ``reason`` says why) when a score is not finite, when
    ``ceiling - weak < min_gap`` (negative gaps included), e.g.
    ``"ceiling − weak gap 0.004 < 0.02: PGR undefined"``, or, given the gap's standard error
    ``gap_se`` (see :func:`gap_standard_error`), when the gap is within ``gap_z`` standard
    errors of zero: then the gap may be noise and so would be any ratio over it.
    ``gap_z = 0`` turns the noise check off.
    """
    for name, value in (("min_gap", min_gap), ("gap_z", gap_z)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UserError(f"PGR {name} must be a finite number >= 0, got {value!r}")
    weak, student, ceiling = float(weak), float(student), float(ceiling)
    gap = ceiling - weak
    se = None if gap_se is None else float(gap_se)
    if not all(math.isfinite(x) for x in (weak, student, ceiling)):
        why = f"non-finite score (weak {weak}, student {student}, ceiling {ceiling}): PGR undefined"
        return PGR(None, why, gap, se)
    if gap < min_gap - _GAP_SLACK or gap <= 0:
        why = " (ceiling below weak)" if gap < 0 else ""
        return PGR(None, f"ceiling − weak gap {gap:.3g} < {min_gap:g}{why}: PGR undefined", gap, se)
    if se is not None and gap_z > 0 and gap < gap_z * se - _GAP_SLACK:
        return PGR(None, f"ceiling − weak gap {gap:.3g} < {gap_z:g} × its standard error {se:.3g} "
                         "(within noise): PGR undefined", gap, se)
    return PGR((student - weak) / gap, None, gap, se)


@dataclass(frozen=True)
class Misfit:
    """How far the student's predictions are from the weak labels it was trained on."""

    mean_kl: float
    disagreement: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _bernoulli_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return p * (np.log(p) - np.log(q)) + (1.0 - p) * (np.log1p(-p) - np.log1p(-q))


def misfit(student_probs: np.ndarray, weak_probs: np.ndarray, eps: float = 1e-6) -> Misfit:
    """Misfit between student and weak predictions: mean ``KL(weak || student)`` and disagreement.

    Direction: ``KL(f_w(x) || f_sw(x))``, the weak model's predictive distribution first.
    Charikar, Pabbaraju & Shiragur (2024) prove, for squared loss and a convex strong class,
    ``err(f_sw) <= err(f_w) - d(f_sw, f_w)``: the student's gain over the weak model is at
    least the misfit. Mulgund & Pabbaraju (2025, arXiv:2501.19105) extend it to Bregman
    divergences, which covers cross-entropy: the student minimises ``E KL(f_w || f)`` (xent
    against the weak labels minus their entropy), and the Bregman Pythagorean inequality for
    that projection gives ``KL(f_sw || f*) <= KL(f_w || f*) - KL(f_w || f_sw)``. So the misfit
    is the student's own KL loss on the weak labels, evaluated here on held-out data.
    Probabilities are clipped to ``[eps, 1 - eps]``; ``disagreement = 1 - agreement``.
    """
    s, w = _as_pair(student_probs, weak_probs, "misfit")
    s_c, w_c = np.clip(s, eps, 1.0 - eps), np.clip(w, eps, 1.0 - eps)
    return Misfit(mean_kl=float(np.mean(_bernoulli_kl(w_c, s_c))), disagreement=1.0 - agreement(s, w))
