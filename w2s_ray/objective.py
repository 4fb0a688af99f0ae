"""The searched objective. It never touches test labels.

``gt`` (default): validation PGR from the (capped) GT validation labels. When the shared
weak/ceiling gap is too small for PGR to mean anything (below ``min_gap``, or within
``gap_z`` standard errors of zero: the rule of :func:`w2s_ray.metrics.pgr`) the objective
falls back to the student's accuracy gain over the weak model, which ranks trials
identically (the gap is the same for every trial in a search) and is flagged as
``pgr_defined = 0``.

``weak`` (no-GT setting): agreement with weak labels plus mean confidence. It favours
imitation of the weak model, and its confidence term can outweigh low agreement (an
overconfident, collapsed student won the sst2 quick search in docs/results.md); results
selected this way must be read with that in mind.
"""

from __future__ import annotations

import numpy as np

from w2s_ray.metrics import GAP_Z, pgr

SELECT_MODES = ("gt", "weak")


def gt_objective(student_val_acc: float, weak_val_acc: float, ceiling_val_acc: float, min_gap: float,
                 gap_se: float | None = None, gap_z: float = GAP_Z) -> tuple[float, bool]:
    """(objective, pgr_defined): validation PGR, or the accuracy gain over weak where PGR is undefined."""
    gain = pgr(weak_val_acc, student_val_acc, ceiling_val_acc, min_gap=min_gap, gap_se=gap_se, gap_z=gap_z)
    if gain.value is not None:
        return gain.value, True
    return student_val_acc - weak_val_acc, False


def weak_objective(agreement_with_weak: float, student_val_probs: np.ndarray) -> float:
    """Agreement with weak labels plus confidence: biased toward imitation."""
    return 0.5 * agreement_with_weak + 0.5 * float(np.mean(np.abs(2 * np.asarray(student_val_probs) - 1)))


def epoch_objective(metrics: dict, spec: dict) -> float:
    """The per-epoch objective a student worker reports (progress table, ASHA)."""
    if spec.get("select_on") == "weak":
        return float(metrics.get("val_acc_weak", float("nan")))
    value, _ = gt_objective(metrics["val_acc_gt"], spec["weak"], spec["ceiling"], spec["min_gap"],
                            spec.get("gap_se"), spec.get("gap_z", GAP_Z))
    return value
