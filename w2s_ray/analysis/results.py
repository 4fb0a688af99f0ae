"""Weak / student / ceiling comparison: accuracies, PGR, agreement and misfit."""

from __future__ import annotations

from typing import Any

import numpy as np

from w2s_ray.analysis.metrics import GAP_Z, accuracy, agreement, gap_standard_error, misfit, pgr
from w2s_ray.pipeline.data import PreparedData
from w2s_ray.pipeline.stages import StageResult, labelled_val


def compare(data: PreparedData, weak: StageResult, student: StageResult, ceiling: StageResult,
            split: str = "val", val_labels: int | None = None, min_gap: float = 0.02,
            gap_z: float = GAP_Z) -> dict[str, Any]:
    """Metrics on one split. On ``val`` only the first ``val_labels`` GT labels are used.

    PGR is undefined when ceiling − weak is below ``min_gap`` or within ``gap_z`` paired
    standard errors of zero on the labelled examples (see :func:`w2s_ray.analysis.metrics.pgr`).
    """
    labels = data.splits[split].labels.astype(np.float64)
    if split == "val":
        labels = labelled_val(labels, val_labels)
    known = ~np.isnan(labels)
    w, s, c = weak.probs(split), student.probs(split), ceiling.probs(split)
    accs = {name: accuracy(p[known], labels[known]) for name, p in (("weak", w), ("student", s), ("ceiling", c))}
    gap_se = gap_standard_error(w[known], c[known], labels[known])
    gain = pgr(accs["weak"], accs["student"], accs["ceiling"], min_gap=min_gap, gap_se=gap_se, gap_z=gap_z)
    fit = misfit(s, w)
    return {
        "split": split,
        "n_labels": int(known.sum()),
        "weak_acc": accs["weak"],
        "student_acc": accs["student"],
        "ceiling_acc": accs["ceiling"],
        "pgr": gain.value,
        "pgr_defined": gain.value is not None,
        "pgr_reason": gain.reason,
        "gap": gain.gap,
        "gap_se": gap_se,
        "student_acc_vs_weak": accuracy(s, w),  # val accuracy against weak labels
        "student_weak_agreement": agreement(s, w),
        "misfit_kl": fit.mean_kl,
        "misfit_disagreement": fit.disagreement,
    }

