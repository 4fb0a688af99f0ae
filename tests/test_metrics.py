"""Metrics against values worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from w2s_ray.analysis.metrics import Misfit, accuracy, agreement, gap_standard_error, misfit, pgr
from w2s_ray.errors import UserError


def test_accuracy_hard_and_soft_labels():
    probs = np.array([0.9, 0.4, 0.6, 0.2])
    assert accuracy(probs, np.array([1, 0, 0, 0])) == pytest.approx(3 / 4)
    # soft labels are thresholded at 0.5: [1, 0, 0, 0]
    assert accuracy(probs, np.array([0.8, 0.3, 0.4, 0.1])) == pytest.approx(3 / 4)
    assert accuracy(probs, np.array([1, 1, 0, 1])) == pytest.approx(1 / 4)  # preds [1, 0, 1, 0]


def test_a_tie_counts_half_whatever_the_class_balance():
    # an unbalanced pairwise test split: a was chosen in 55 of 100 pairs. A model with r(a) == r(b)
    # everywhere (sigmoid(0) = 0.5) prefers nothing; counting ties as "b" used to score it 0.45
    labels = np.array([1] * 55 + [0] * 45)
    ties = np.full(100, 0.5)
    assert accuracy(ties, labels) == pytest.approx(0.5)
    assert accuracy(ties, 1 - labels) == pytest.approx(0.5)
    # one tie among decided examples: 2 right + half
    assert accuracy([0.9, 0.5, 0.2], [1, 1, 0]) == pytest.approx(2.5 / 3)
    # a soft label of exactly 0.5 is a tie too
    assert accuracy([0.9, 0.2], [0.5, 0.5]) == pytest.approx(0.5)


def test_agreement_counts_a_tie_half():
    assert agreement([0.5, 0.5, 0.9, 0.1], [0.9, 0.1, 0.8, 0.7]) == pytest.approx((0.5 + 0.5 + 1 + 0) / 4)
    # two ties broken by independent coins agree half the time
    assert agreement([0.5], [0.5]) == pytest.approx(0.5)
    assert misfit([0.5, 0.9], [0.9, 0.9]).disagreement == pytest.approx(0.25)


def test_gap_standard_error_counts_a_tie_half():
    # weak ties everywhere (0.5 credit each), the ceiling is right on 3 of 4: d = [.5, .5, .5, -.5]
    labels = [1, 0, 1, 0]
    se = gap_standard_error([0.5] * 4, [0.9, 0.1, 0.8, 0.7], labels)
    assert se == pytest.approx(np.std([0.5, 0.5, 0.5, -0.5], ddof=1) / 2)


def test_agreement():
    assert agreement([0.9, 0.4, 0.6], [0.7, 0.6, 0.55]) == pytest.approx(2 / 3)
    assert agreement([0.1, 0.2], [0.3, 0.4]) == 1.0


@pytest.mark.parametrize("fn", [accuracy, agreement])
def test_mismatched_or_empty_inputs_raise(fn):
    with pytest.raises(ValueError, match="examples"):
        fn([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="no examples"):
        fn([], [])


def test_pgr_defined():
    r = pgr(weak=0.6, student=0.7, ceiling=0.8)
    assert r.value == pytest.approx(0.5)
    assert r.reason is None and r.defined
    assert r.gap == pytest.approx(0.2)
    assert pgr(0.6, 0.55, 0.8).value == pytest.approx(-0.25)
    assert pgr(0.6, 0.9, 0.8).value == pytest.approx(1.5)


def test_pgr_undefined_for_a_small_gap_with_reason():
    r = pgr(weak=0.7, student=0.75, ceiling=0.704)
    assert r.value is None and not r.defined
    assert r.reason == "ceiling − weak gap 0.004 < 0.02: PGR undefined"
    assert r.gap == pytest.approx(0.004)


def test_pgr_undefined_for_a_negative_gap():
    r = pgr(weak=0.8, student=0.9, ceiling=0.7)
    assert r.value is None
    assert "-0.1 < 0.02" in r.reason and "ceiling below weak" in r.reason
    assert r.gap == pytest.approx(-0.1)


def test_pgr_min_gap_edges():
    # 0.42 - 0.40 is 0.019999999999999962 in floats but 0.02 exactly: defined
    assert 0.42 - 0.40 < 0.02
    r = pgr(0.40, 0.41, 0.42, min_gap=0.02)
    assert r.value == pytest.approx(0.5)
    # just below the threshold: undefined
    assert pgr(0.40, 0.41, 0.4199, min_gap=0.02).value is None
    # a custom threshold
    assert pgr(0.5, 0.52, 0.54, min_gap=0.05).value is None
    assert pgr(0.5, 0.52, 0.54, min_gap=0.03).value == pytest.approx(0.5)
    # min_gap 0 still never divides by a zero gap
    r0 = pgr(0.5, 0.6, 0.5, min_gap=0.0)
    assert r0.value is None and "PGR undefined" in r0.reason
    assert pgr(0.5, 0.505, 0.51, min_gap=0.0).value == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf"), "0.02"])
def test_pgr_rejects_bad_min_gap(bad):
    with pytest.raises(UserError, match="min_gap"):
        pgr(0.5, 0.6, 0.7, min_gap=bad)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), True])
def test_pgr_rejects_bad_gap_z(bad):
    with pytest.raises(UserError, match="gap_z"):
        pgr(0.5, 0.6, 0.7, gap_se=0.01, gap_z=bad)


def test_gap_standard_error_is_paired():
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    weak = [0.9, 0.9, 0.2, 0.2, 0.1, 0.1, 0.1, 0.8]     # right on 0, 1, 4, 5, 6
    ceiling = [0.9, 0.9, 0.9, 0.2, 0.1, 0.1, 0.1, 0.1]  # right on 0, 1, 2, 4, 5, 6, 7
    # d = ceiling right - weak right = [0, 0, 1, 0, 0, 0, 0, 1]: mean 1/4, sample var 1/4 * 3/4 * 8/7
    expected = math.sqrt((0.25 * 0.75 * 8 / 7) / 8)
    assert gap_standard_error(weak, ceiling, labels) == pytest.approx(expected)
    # models that agree everywhere have no gap noise at all
    assert gap_standard_error(weak, weak, labels) == 0.0
    # too few examples to estimate a spread
    assert gap_standard_error([0.9], [0.1], [1]) == math.inf
    with pytest.raises(ValueError, match="examples"):
        gap_standard_error([0.9, 0.1], [0.1], [1, 0])


def test_pgr_undefined_when_the_gap_is_within_noise():
    # gap 0.04 passes min_gap 0.02, but with a standard error of 0.035 it is noise at z = 2
    r = pgr(weak=0.50, student=0.57, ceiling=0.54, min_gap=0.02, gap_se=0.035)
    assert r.value is None and r.gap_se == pytest.approx(0.035)
    assert r.reason == "ceiling − weak gap 0.04 < 2 × its standard error 0.035 (within noise): PGR undefined"
    # the same gap with a small standard error, or with the check turned off, is defined
    assert pgr(0.50, 0.57, 0.54, gap_se=0.015).value == pytest.approx(1.75)
    assert pgr(0.50, 0.57, 0.54, gap_se=0.035, gap_z=0).value == pytest.approx(1.75)
    assert pgr(0.50, 0.57, 0.54, gap_se=0.035, gap_z=1.0).value == pytest.approx(1.75)
    # exactly z standard errors counts as defined (the boundary is inclusive, like min_gap's)
    assert pgr(0.50, 0.52, 0.54, gap_se=0.02).value == pytest.approx(0.5)
    # without a standard error only min_gap applies
    assert pgr(0.50, 0.57, 0.54).value == pytest.approx(1.75)


def test_pgr_non_finite_scores_are_undefined():
    r = pgr(0.5, float("nan"), 0.7)
    assert r.value is None and "non-finite" in r.reason


def test_pgr_to_dict_is_json():
    d = pgr(0.7, 0.75, 0.704).to_dict()
    assert set(d) == {"value", "reason", "gap", "gap_se"}
    assert json.loads(json.dumps(d))["value"] is None


def kl_bern(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_misfit_is_kl_weak_to_student_and_disagreement():
    student = [0.8, 0.3, 0.45]
    weak = [0.6, 0.4, 0.7]
    m = misfit(student, weak)
    expected = (kl_bern(0.6, 0.8) + kl_bern(0.4, 0.3) + kl_bern(0.7, 0.45)) / 3
    assert m.mean_kl == pytest.approx(expected, rel=1e-6)
    assert m.disagreement == pytest.approx(1 / 3)  # only the third flips
    # the direction matters: KL(student || weak) is a different number
    reverse = (kl_bern(0.8, 0.6) + kl_bern(0.3, 0.4) + kl_bern(0.45, 0.7)) / 3
    assert abs(m.mean_kl - reverse) > 1e-3
    assert m.to_dict() == {"mean_kl": m.mean_kl, "disagreement": m.disagreement}


def test_misfit_is_zero_for_identical_predictions_and_finite_at_certainty():
    m = misfit([0.2, 0.9], [0.2, 0.9])
    assert m == Misfit(mean_kl=pytest.approx(0.0, abs=1e-12), disagreement=0.0)
    hard = misfit([0.0, 1.0], [1.0, 0.0], eps=1e-6)
    assert math.isfinite(hard.mean_kl) and hard.mean_kl > 10
    assert hard.disagreement == 1.0
