"""Paired comparison of two configs over seeds: is the best config's gain beyond noise?

Each seed gives both configs the same splits and references, so the per-seed difference
removes the shared noise. Reported: the mean difference, its standard error, a one-sided
Wilcoxon signed-rank p-value and a one-sided sign-test p-value (H1: best > baseline). The
verdict "beyond noise" needs at least 3 pairs, a mean difference above 2 standard errors and a
Wilcoxon p below 0.05 (with 5 seeds the smallest one-sided Wilcoxon p is 1/32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

ALPHA = 0.05
MIN_PAIRS = 3


def paired_comparison(best: Sequence[float | None], baseline: Sequence[float | None],
                      metric: str = "test PGR") -> dict[str, Any]:
    """Statistics of ``best - baseline`` over the seeds where both are defined."""
    from scipy import stats

    pairs = [(float(b), float(a)) for b, a in zip(best, baseline) if b is not None and a is not None
             and math.isfinite(b) and math.isfinite(a)]
    diffs = np.asarray([b - a for b, a in pairs])
    n = len(diffs)
    out: dict[str, Any] = {"metric": metric, "n": n, "diffs": diffs.tolist(), "mean": None, "se": None,
                           "wilcoxon_p": None, "sign_p": None, "beyond_noise": False}
    if n == 0:
        return out
    out["mean"] = float(diffs.mean())
    out["se"] = float(diffs.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    nonzero = diffs[diffs != 0]
    if len(nonzero):
        out["wilcoxon_p"] = float(stats.wilcoxon(nonzero, alternative="greater").pvalue)
        out["sign_p"] = float(stats.binomtest(int((nonzero > 0).sum()), len(nonzero), 0.5,
                                              alternative="greater").pvalue)
    out["beyond_noise"] = bool(n >= MIN_PAIRS and out["se"] is not None and out["mean"] > 2 * out["se"]
                               and out["wilcoxon_p"] is not None and out["wilcoxon_p"] < ALPHA)
    return out


def verdict(stats: dict[str, Any], best: str = "best", baseline: str = "the xent baseline") -> str:
    """One line: does ``best`` beat ``baseline`` beyond noise?"""
    if stats["n"] == 0:
        return f"{best} vs {baseline}: no seed where both have a defined {stats['metric']}; no comparison"
    se = f" ± {stats['se']:.3f} SE" if stats["se"] is not None else ""
    p = f", Wilcoxon p = {stats['wilcoxon_p']:.3f}, sign-test p = {stats['sign_p']:.3f}" \
        if stats["wilcoxon_p"] is not None else ""
    word = "beats" if stats["beyond_noise"] else "does not beat"
    return (f"{best} {word} {baseline} on {stats['metric']} beyond noise: paired difference "
            f"{stats['mean']:+.3f}{se} over {stats['n']} seeds{p} (one-sided)")
