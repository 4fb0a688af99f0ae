"""The searched objective. It never touches test labels.

``gt`` (default): validation PGR from the (capped) GT validation labels. When the shared
weak/ceiling gap is too small for PGR to mean anything (below ``min_gap``, or within
``gap_z`` standard errors of zero: the rule of :func:`w2s_ray.analysis.metrics.pgr`) the objective
falls back to the student's accuracy gain over the weak model, which ranks trials
identically (the gap is the same for every trial in a search) and is flagged as
``pgr_defined = 0``.

``weak`` (no-GT setting, :func:`no_gt_score`): agreement with the weak labels first; mean
confidence only breaks ties (weight :data:`CONFIDENCE_WEIGHT`, too small to outweigh one
example's agreement on fewer than 500,000 validation examples); and a collapsed student, one
predicting a single class on more than :data:`COLLAPSE_SHARE` of validation, scores below
every student that is not collapsed. The per-epoch objective (progress table, ASHA) and the
final one are this same score. It still favours imitation of the weak model. (It replaced
``0.5 agreement + 0.5 confidence``, under which an overconfident collapsed student won the
sst2 quick search in docs/results.md.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from w2s_ray.analysis.metrics import GAP_Z, agreement, pgr, vote

SELECT_MODES = ("gt", "weak")


def gt_objective(student_val_acc: float, weak_val_acc: float, ceiling_val_acc: float, min_gap: float,
                 gap_se: float | None = None, gap_z: float = GAP_Z) -> tuple[float, bool]:
    """(objective, pgr_defined): validation PGR, or the accuracy gain over weak where PGR is undefined."""
    gain = pgr(weak_val_acc, student_val_acc, ceiling_val_acc, min_gap=min_gap, gap_se=gap_se, gap_z=gap_z)
    if gain.value is not None:
        return gain.value, True
    return student_val_acc - weak_val_acc, False


# Mean confidence |2p - 1| enters the no-GT score with this weight: a tie-breaker only. Agreement
# moves in steps of 1 / (2n) on n examples (a tie counts half), more than 1e-6 when n < 500,000.
CONFIDENCE_WEIGHT = 1e-6
# A student predicting one class on more than this share of validation counts as collapsed.
COLLAPSE_SHARE = 0.9
# Subtracted from a collapsed student's score: puts it below 0, the least a non-collapsed one scores.
_COLLAPSE_PENALTY = 2.0


def prediction_terms(student_val_probs: np.ndarray) -> dict[str, float]:
    """The no-GT score's student-only terms on validation: majority predicted-class share, mean confidence.

    ``val_major_share`` is ``max(s, 1 - s)`` with ``s`` the share predicted label 1 (a tie
    counting half); ``val_confidence`` is ``mean |2p - 1|``.
    """
    probs = np.asarray(student_val_probs, dtype=np.float64).reshape(-1)
    positive = float(np.mean(vote(probs)))
    return {"val_major_share": max(positive, 1.0 - positive),
            "val_confidence": float(np.mean(np.abs(2.0 * probs - 1.0)))}


def no_gt_score(agreement_with_weak: float, major_share: float, confidence: float) -> float:
    """``agreement + CONFIDENCE_WEIGHT * confidence``, minus 2 for a collapsed student.

    Agreement decides; confidence only breaks ties. A student whose ``major_share`` exceeds
    :data:`COLLAPSE_SHARE` lands in ``[-2, -1 + 1e-6]``, below any non-collapsed student's
    ``[0, 1 + 1e-6]``; collapsed students still rank among themselves by agreement. NaN when a
    term is missing (NaN).
    """
    score = float(agreement_with_weak) + CONFIDENCE_WEIGHT * float(confidence)
    return score - _COLLAPSE_PENALTY if float(major_share) > COLLAPSE_SHARE else score


def weak_objective(student_val_probs: np.ndarray, weak_val_probs: np.ndarray) -> float:
    """The no-GT objective of a student's validation predictions against the weak model's."""
    terms = prediction_terms(student_val_probs)
    return no_gt_score(agreement(student_val_probs, weak_val_probs), terms["val_major_share"], terms["val_confidence"])


def epoch_objective(metrics: Mapping[str, Any], spec: Mapping[str, Any]) -> float:
    """The per-epoch objective a student worker reports (progress table, ASHA).

    Under ``select_on = weak`` it is :func:`no_gt_score` of the epoch's ``val_acc_weak`` (the
    agreement with the weak labels) and :func:`prediction_terms`, as the final pick uses.
    """
    if spec.get("select_on") == "weak":
        nan = float("nan")
        return no_gt_score(metrics.get("val_acc_weak", nan), metrics.get("val_major_share", nan),
                           metrics.get("val_confidence", nan))
    value, _ = gt_objective(metrics["val_acc_gt"], spec["weak"], spec["ceiling"], spec["min_gap"],
                            spec.get("gap_se"), spec.get("gap_z", GAP_Z))
    return value


@dataclass(frozen=True)
class EpochObjective:
    """The per-epoch objective as a student's epoch hook (``TrainJob.epoch_metrics``).

    Holds what the objective needs besides the epoch (the shared weak and ceiling validation
    accuracies, the gap's noise), so it pickles and travels to the training workers. Called with
    the epoch's metrics and the monitored predictions, it returns :func:`prediction_terms` of
    the validation predictions and their :func:`epoch_objective`.
    """

    select_on: str
    weak: float
    ceiling: float
    min_gap: float
    gap_se: float | None = None
    gap_z: float = GAP_Z

    def __call__(self, metrics: Mapping[str, Any], predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        extra = prediction_terms(predictions["val"])
        extra["objective"] = epoch_objective({**metrics, **extra}, dataclasses.asdict(self))
        return extra
