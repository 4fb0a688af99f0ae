"""The searched objective and the per-split comparison share one PGR definedness rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from w2s_ray.data import PreparedData, Split
from w2s_ray.objective import epoch_objective, gt_objective, weak_objective
from w2s_ray.results import compare


def test_gt_objective_is_pgr_when_the_gap_is_real():
    value, defined = gt_objective(0.75, 0.6, 0.8, min_gap=0.02, gap_se=0.02)
    assert defined and value == pytest.approx(0.75)


def test_gt_objective_falls_back_to_the_gain_when_the_gap_is_noise():
    # gap 0.04 clears min_gap but not 2 standard errors of 0.035
    value, defined = gt_objective(0.57, 0.50, 0.54, min_gap=0.02, gap_se=0.035)
    assert not defined and value == pytest.approx(0.07)
    # the fallback ranks trials like PGR would: same sign, same order
    worse, _ = gt_objective(0.52, 0.50, 0.54, min_gap=0.02, gap_se=0.035)
    assert worse < value
    # with the noise check off the same numbers give PGR
    value, defined = gt_objective(0.57, 0.50, 0.54, min_gap=0.02, gap_se=0.035, gap_z=0)
    assert defined and value == pytest.approx(1.75)


def test_epoch_objective_uses_the_shared_gap_noise():
    spec = {"select_on": "gt", "weak": 0.50, "ceiling": 0.54, "min_gap": 0.02, "gap_se": 0.035, "gap_z": 2.0}
    assert epoch_objective({"val_acc_gt": 0.57}, spec) == pytest.approx(0.07)
    spec_small_noise = {**spec, "gap_se": 0.01}
    assert epoch_objective({"val_acc_gt": 0.57}, spec_small_noise) == pytest.approx(1.75)
    # specs saved before the noise check existed still evaluate (min_gap only)
    old = {k: v for k, v in spec.items() if k not in ("gap_se", "gap_z")}
    assert epoch_objective({"val_acc_gt": 0.57}, old) == pytest.approx(1.75)
    assert epoch_objective({"val_acc_weak": 0.9}, {"select_on": "weak"}) == pytest.approx(0.9)


def test_weak_objective_rewards_agreement_and_confidence():
    assert weak_objective(1.0, np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert weak_objective(0.5, np.array([0.5, 0.5])) == pytest.approx(0.25)


@dataclass
class _FixedStage:
    """A stage whose predictions are given directly (compare only reads ``probs``)."""

    by_split: dict

    def probs(self, split: str) -> np.ndarray:
        return np.asarray(self.by_split[split], dtype=float)


def _data(labels: list[int]) -> PreparedData:
    n = len(labels)
    split = Split(ids=[str(i) for i in range(n)], inputs=[""] * n, labels=np.asarray(labels, dtype=float))
    return PreparedData("t", "classify", "m", {"val": split, "test": split}, "fp")


def test_compare_reports_the_gap_standard_error_and_flags_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    # weak right on about half the examples; the ceiling fixes 30 of its errors but breaks 22 of
    # its right answers: a net gap of 8/200 = 0.04 from 52 discordant examples, i.e. noise
    weak_right = rng.random(200) < 0.5
    ceiling_right = weak_right.copy()
    ceiling_right[np.flatnonzero(~weak_right)[:30]] = True
    ceiling_right[np.flatnonzero(weak_right)[:22]] = False
    as_probs = lambda right: np.where(right == labels.astype(bool), 0.9, 0.1)  # noqa: E731
    weak, ceiling = _FixedStage({"val": as_probs(weak_right)}), _FixedStage({"val": as_probs(ceiling_right)})
    student = _FixedStage({"val": as_probs(ceiling_right)})
    out = compare(_data(labels.tolist()), weak, student, ceiling, "val", min_gap=0.02)
    assert out["gap"] == pytest.approx(8 / 200)
    d = ceiling_right.astype(float) - weak_right.astype(float)
    assert out["gap_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(200))
    assert out["gap"] < 2 * out["gap_se"]
    assert out["pgr"] is None and "within noise" in out["pgr_reason"]
    # the same predictions with the check off: PGR 1 (the student is the ceiling)
    out = compare(_data(labels.tolist()), weak, student, ceiling, "val", min_gap=0.02, gap_z=0)
    assert out["pgr"] == pytest.approx(1.0)
    # the same net gap from only 8 discordant examples is real: PGR defined at z = 2
    ceiling_right = weak_right.copy()
    ceiling_right[np.flatnonzero(~weak_right)[:8]] = True
    consistent = _FixedStage({"val": as_probs(ceiling_right)})
    out = compare(_data(labels.tolist()), weak, consistent, consistent, "val", min_gap=0.02)
    assert out["gap"] == pytest.approx(0.04) and out["pgr"] == pytest.approx(1.0)
