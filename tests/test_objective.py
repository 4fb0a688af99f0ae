"""The searched objective and the per-split comparison share one PGR definedness rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from w2s_ray.analysis.metrics import accuracy
from w2s_ray.analysis.results import compare
from w2s_ray.pipeline.data import PreparedData, Split
from w2s_ray.search.objective import (
    COLLAPSE_SHARE,
    CONFIDENCE_WEIGHT,
    epoch_objective,
    gt_objective,
    prediction_terms,
    weak_objective,
)


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


def _labels(n: int, positive: int) -> np.ndarray:
    return np.array([0.8] * positive + [0.2] * (n - positive))


def test_the_no_gt_criterion_cannot_be_won_by_a_confident_collapsed_student():
    # the sst2 quick search's case: weak labels 62% positive; a student predicting label 1 on
    # every example with confidence 0.84 agrees with 62% of them and used to outscore students
    # that agree more but are less confident (0.5 agreement + 0.5 confidence)
    weak = _labels(100, 62)
    collapsed = np.full(100, 0.92)
    i = np.arange(100)
    honest = np.where((i < 50) | ((i >= 62) & (i < 80)), 0.55, 0.45)  # agreement 0.70, confidence 0.1
    assert accuracy(honest, weak) == pytest.approx(0.70)
    assert weak_objective(honest, weak) > weak_objective(collapsed, weak)
    # even a student agreeing with nothing beats a collapsed one
    contrary = 1.0 - np.where(weak > 0.5, 0.9, 0.1)
    assert prediction_terms(contrary)["val_major_share"] <= COLLAPSE_SHARE
    assert weak_objective(contrary, weak) > weak_objective(collapsed, weak)


def test_agreement_decides_and_confidence_only_breaks_ties():
    weak = _labels(10, 5)
    right = np.where(weak > 0.5, 0.51, 0.49)  # agrees on all 10, barely confident
    one_wrong = np.where(weak > 0.5, 1.0, 0.0)
    one_wrong[0] = 0.0  # agrees on 9 of 10, fully confident
    assert weak_objective(right, weak) > weak_objective(one_wrong, weak)
    sure = np.where(weak > 0.5, 0.99, 0.01)  # same agreement as `right`, more confident
    assert weak_objective(sure, weak) > weak_objective(right, weak)
    assert weak_objective(sure, weak) - weak_objective(right, weak) <= CONFIDENCE_WEIGHT


def test_collapse_is_more_than_90_percent_one_class():
    weak = _labels(10, 5)
    nine = np.array([0.9] * 9 + [0.1])  # 90% label 1: not collapsed
    ten = np.full(10, 0.9)
    assert prediction_terms(nine)["val_major_share"] == pytest.approx(0.9)
    assert weak_objective(nine, weak) == pytest.approx(0.6 + CONFIDENCE_WEIGHT * 0.8)
    assert weak_objective(ten, weak) == pytest.approx(0.5 + CONFIDENCE_WEIGHT * 0.8 - 2.0)
    assert prediction_terms(1.0 - ten)["val_major_share"] == pytest.approx(1.0)  # either class
    # a tie is half a vote for each class
    assert prediction_terms([0.5, 0.5, 0.9, 0.1])["val_major_share"] == pytest.approx(0.5)


def test_the_epoch_objective_is_the_final_no_gt_score():
    weak = _labels(20, 12)
    spec = {"select_on": "weak"}
    for student in (np.full(20, 0.8), np.linspace(0.05, 0.95, 20)):
        # what the worker reports per epoch: val_acc_weak = accuracy against the weak labels
        metrics = {"val_acc_weak": accuracy(student, weak), **prediction_terms(student)}
        assert epoch_objective(metrics, spec) == weak_objective(student, weak)
    assert epoch_objective({"val_acc_weak": 0.9, "val_major_share": 0.95, "val_confidence": 0.5}, spec) < 0
    assert math.isnan(epoch_objective({"val_acc_weak": 0.9}, spec))  # no share: no score


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
