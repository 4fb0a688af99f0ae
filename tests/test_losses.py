"""Each loss against its formula written out by hand with math.log / math.exp."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from w2s_ray import losses
from w2s_ray.errors import UserError
from w2s_ray.losses import LOSS_DEFAULT, LOSSES, get_loss, loss_param_names, make_loss, ramp, register_loss


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def ce(z: float, y: float) -> float:
    """-[y log sigmoid(z) + (1-y) log(1 - sigmoid(z))], by hand."""
    p = sig(z)
    return -(y * math.log(p) + (1.0 - y) * math.log(1.0 - p))


def binent(p: float) -> float:
    return -sum(q * math.log(q) for q in (p, 1.0 - p) if q > 0)


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def t(xs) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


Z = [0.5, -1.0, 2.0]
Y = [0.8, 0.3, 1.0]


def call(name: str, z, y, progress: float = 1.0, kind: str = "classify", **params) -> float:
    return float(make_loss(name, params, kind)(t(z), t(y), progress))


# ---------------------------------------------------------------------------------------------
# formulas


def test_xent_matches_hand_formula():
    expected = mean(ce(z, y) for z, y in zip(Z, Y))
    assert call("xent", Z, Y) == pytest.approx(expected, rel=1e-6)


def test_bt_is_soft_bradley_terry_on_margins():
    r_a, r_b = [1.2, 0.1, -0.4], [0.2, 0.6, -0.4]
    y = [0.9, 0.25, 0.5]
    expected = mean(
        -(yy * math.log(sig(a - b)) + (1 - yy) * math.log(sig(b - a))) for a, b, yy in zip(r_a, r_b, y)
    )
    margins = [a - b for a, b in zip(r_a, r_b)]
    assert call("bt", margins, y, kind="pairwise") == pytest.approx(expected, rel=1e-6)


def test_kl_is_xent_minus_target_entropy_and_zero_at_perfect_fit():
    expected = mean(ce(z, y) - binent(y) for z, y in zip(Z, Y))
    assert call("kl", Z, Y) == pytest.approx(expected, rel=1e-5)
    y = [0.8, 0.3, 0.55]
    z_fit = [math.log(p / (1 - p)) for p in y]
    assert call("kl", z_fit, y) == pytest.approx(0.0, abs=1e-6)


def test_kl_has_the_same_gradient_as_xent():
    grads = {}
    for name in ("kl", "xent"):
        z = t(Z).requires_grad_()
        make_loss(name, None, "classify")(z, t(Y), 0.5).backward()
        grads[name] = z.grad
    # d/dz CE = (sigmoid(z) - y) / N, by hand
    by_hand = t([(sig(z) - y) / len(Z) for z, y in zip(Z, Y)])
    assert torch.allclose(grads["kl"], by_hand, atol=1e-6)
    assert torch.allclose(grads["xent"], by_hand, atol=1e-6)


LZ = [2.0, -1.0, 0.5, -3.0]
LY = [0.9, 0.2, 0.6, 0.1]
# mean(LY) = 0.45 -> threshold = quantile(z, 0.55): sorted z = [-3, -1, 0.5, 2], position
# 0.55 * 3 = 1.65 -> -1 + 0.65 * (0.5 - (-1)) = -0.025, so the hardened labels are z > -0.025:
LH = [1.0, 0.0, 1.0, 0.0]


def logconf_by_hand(coef: float) -> float:
    return mean((1 - coef) * ce(z, y) + coef * ce(z, h) for z, y, h in zip(LZ, LY, LH))


@pytest.mark.parametrize(
    "progress, coef",
    [(0.0, 0.0), (0.05, 0.125), (0.1, 0.25), (0.15, 0.375), (0.2, 0.5), (0.7, 0.5), (1.0, 0.5)],
)
def test_logconf_mixture_with_linear_warmup(progress, coef):
    got = call("logconf", LZ, LY, progress, aux_coef=0.5, warmup_frac=0.2)
    assert got == pytest.approx(logconf_by_hand(coef), rel=1e-6)


def test_logconf_defaults_are_filled_in():
    # defaults aux_coef=0.5, warmup_frac=0.2: at progress 0.1 the coefficient is 0.25
    got = float(make_loss("logconf", None, "classify")(t(LZ), t(LY), 0.1))
    assert got == pytest.approx(logconf_by_hand(0.25), rel=1e-6)


def test_logconf_hardens_at_the_weak_prior_quantile():
    # 8 distinct scores, weak prior 0.25 -> exactly the top 2 scores are hardened to 1
    z = [0.3, -0.2, 1.5, -1.0, 0.9, 0.1, -0.6, 2.2]
    y = [0.5, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.5]
    h = [0, 0, 1, 0, 0, 0, 0, 1]
    expected = mean(ce(zz, hh) for zz, hh in zip(z, h))  # aux_coef=1 after warmup: pure CE(z, h)
    assert call("logconf", z, y, 1.0, aux_coef=1.0, warmup_frac=0.5) == pytest.approx(expected, rel=1e-6)


def test_logconf_agrees_with_the_reference_two_class_softmax_formulation():
    # openai/weak-to-strong: threshold = quantile(p0, mean(y1)); hard class 1 iff p0 < threshold
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(37, generator=gen) * 2
    y = torch.rand(37, generator=gen)
    logits2 = torch.stack([torch.zeros_like(z), z], dim=1)
    labels2 = torch.stack([1 - y, y], dim=1)
    p0 = torch.softmax(logits2, dim=-1)[:, 0]
    thr = torch.quantile(p0, y.mean())
    hard2 = torch.stack([(p0 >= thr).float(), (p0 < thr).float()], dim=1)
    ref = torch.nn.functional.cross_entropy(logits2, labels2 * 0.5 + hard2 * 0.5)
    ours = make_loss("logconf", {"aux_coef": 0.5, "warmup_frac": 0.1}, "classify")(z, y, 0.9)
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)


@pytest.mark.parametrize("loss, kind", [("logconf", "classify"), ("bt_logconf", "pairwise")])
@pytest.mark.parametrize("z, y", [(-2.0, 1.0), (2.0, 0.0), (0.3, 0.8)])
def test_logconf_hardens_a_batch_of_one_to_its_weak_target(loss, kind, z, y):
    # the quantile of one score is that score, so "z > threshold" gave label 0 whatever y said
    assert losses._harden_at_prior(t([z]), t([y])).tolist() == pytest.approx([y])
    got = call(loss, [z], [y], 1.0, kind=kind, aux_coef=1.0, warmup_frac=0.5)  # pure CE(z, h)
    assert got == pytest.approx(ce(z, y), rel=1e-6)


def test_logconf_splits_the_prior_over_tied_scores():
    # an untrained zero head: every score ties; they share the prior's 3 of 4 positives
    assert losses._harden_at_prior(t([0.0] * 4), t([1, 1, 1, 0])).tolist() == pytest.approx([0.75] * 4)
    # a tie at the threshold gets what is left after the scores above it: prior 0.5 of 5 = 2.5
    # positives; quantile(z, 0.5) = 0.0 with 2 scores above it -> the tied score gets 0.5
    h = losses._harden_at_prior(t([-2.0, -1.0, 0.0, 1.0, 2.0]), t([1, 0, 1, 0, 0.5]))
    assert h.tolist() == pytest.approx([0, 0, 0.5, 1, 1])


def test_bt_logconf_hardens_the_students_preference():
    margins = [0.7, -0.4, 0.1, -1.3]
    y = [0.8, 0.3, 0.6, 0.3]  # prior 0.5 -> quantile(z, 0.5) = (-0.4 + 0.1) / 2 = -0.15
    h = [1, 0, 1, 0]
    coef = 0.4 * (0.05 / 0.1)  # aux_coef 0.4, halfway through a 0.1 warmup
    expected = mean((1 - coef) * ce(m, yy) + coef * ce(m, hh) for m, yy, hh in zip(margins, y, h))
    got = call("bt_logconf", margins, y, 0.05, kind="pairwise", aux_coef=0.4, warmup_frac=0.1)
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0)])
def test_product_target_is_normalised_product_of_weak_and_student(alpha, beta):
    z, y = [1.0, -0.5, 0.2], [0.7, 0.4, 0.9]
    targets = []
    for zz, yy in zip(z, y):
        on = yy**alpha * sig(zz) ** beta
        off = (1 - yy) ** alpha * (1 - sig(zz)) ** beta
        targets.append(on / (on + off))
    expected = mean(ce(zz, tt) for zz, tt in zip(z, targets))
    assert call("product", z, y, alpha=alpha, beta=beta) == pytest.approx(expected, rel=1e-5)
    # the target is detached: d/dz = (sigmoid(z) - target) / N
    zt = t(z).requires_grad_()
    make_loss("product", {"alpha": alpha, "beta": beta}, "classify")(zt, t(y), 0.0).backward()
    assert torch.allclose(zt.grad, t([(sig(a) - b) / 3 for a, b in zip(z, targets)]), atol=1e-6)


def test_product_with_hard_labels_and_saturated_student_is_finite():
    # y = 1 with a student certain of class 0: the reference's 0/0 case
    got = call("product", [-200.0, 200.0, 3.0], [1.0, 0.0, 1.0])
    assert math.isfinite(got)
    # hard labels with alpha > 0 force the target to the label: CE(z, y)
    assert call("product", [3.0], [1.0]) == pytest.approx(ce(3.0, 1.0), rel=1e-5)


def test_window_trains_only_where_the_student_is_uncertain():
    z = [0.0, 0.3, 1.0, -2.0]
    y = [1.0, 0.2, 0.0, 1.0]
    # max(p, 1-p): 0.5, 0.574, 0.731, 0.881 -> with radius 0.1 only the first two are < 0.6
    assert max(sig(0.3), 1 - sig(0.3)) < 0.6 < max(sig(1.0), 1 - sig(1.0))
    expected = (ce(0.0, 1.0) + ce(0.3, 0.2)) / 4  # divided by the whole batch
    assert call("window", z, y, radius=0.1) == pytest.approx(expected, rel=1e-6)
    zt = t(z).requires_grad_()
    make_loss("window", {"radius": 0.1}, "classify")(zt, t(y), 0.0).backward()
    assert zt.grad[2] == 0 and zt.grad[3] == 0
    assert float(zt.grad[0]) == pytest.approx((0.5 - 1.0) / 4, rel=1e-6)
    # radius 0.5 keeps everything: plain xent
    assert call("window", z, y, radius=0.5) == pytest.approx(mean(ce(a, b) for a, b in zip(z, y)), rel=1e-6)


@pytest.mark.parametrize("progress, coef", [(0.0, 0.0), (0.05, 0.025), (0.2, 0.1), (0.9, 0.1)])
def test_entropy_adds_ramped_prediction_entropy(progress, coef):
    expected = mean((1 - coef) * ce(z, y) + coef * binent(sig(z)) for z, y in zip(Z, Y))
    got = call("entropy", Z, Y, progress, aux_coef=0.1, warmup_frac=0.2)
    assert got == pytest.approx(expected, rel=1e-6)


def test_entropy_term_pushes_predictions_away_from_one_half():
    # with aux_coef = 1 only the entropy remains; its gradient at z > 0 is negative (grow z)
    z = t([0.8, -0.8]).requires_grad_()
    make_loss("entropy", {"aux_coef": 1.0, "warmup_frac": 0.0}, "classify")(z, t([0.5, 0.5]), 0.0).backward()
    # dH/dz = -z * p (1 - p) for the binary entropy of sigmoid(z), by hand, / N
    by_hand = [-(zz * sig(zz) * (1 - sig(zz))) / 2 for zz in (0.8, -0.8)]
    assert torch.allclose(z.grad, t(by_hand), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# ramp, gradients, registry and errors


@pytest.mark.parametrize(
    "progress, warmup, expected",
    [(0.0, 0.2, 0.0), (0.05, 0.2, 0.25), (0.1, 0.2, 0.5), (0.2, 0.2, 1.0), (0.9, 0.2, 1.0), (0.3, 0.0, 1.0),
     (-1, 0.2, 0.0)],
)
def test_ramp_is_linear_then_flat(progress, warmup, expected):
    assert ramp(progress, warmup) == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_has_finite_gradients_on_extreme_inputs(name):
    kind = sorted(LOSSES[name].kinds)[0]
    z = t([-80.0, 80.0, 0.0, 3.0, -3.0, 1e-4]).requires_grad_()
    y = t([1.0, 0.0, 0.5, 1.0, 0.0, 0.3])
    loss = make_loss(name, None, kind)(z, y, 0.5)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0


def test_losses_accept_bf16_scores():
    z = t(Z).to(torch.bfloat16)
    assert call("xent", Z, Y) == pytest.approx(float(make_loss("xent", None, "classify")(z, t(Y), 0.0)), rel=1e-2)


def test_defaults_and_kinds():
    assert LOSS_DEFAULT == {"classify": "xent", "pairwise": "bt"}
    for kind, name in LOSS_DEFAULT.items():
        assert kind in get_loss(name).kinds
    assert get_loss("bt").kinds == frozenset({"pairwise"})
    assert get_loss("bt_logconf").kinds == frozenset({"pairwise"})
    assert {"xent", "logconf", "product", "window", "entropy", "kl"} <= {
        n for n, s in LOSSES.items() if "classify" in s.kinds
    }
    assert all(spec.doc for spec in LOSSES.values())


def test_loss_param_names_is_the_union():
    assert loss_param_names() == {"aux_coef", "warmup_frac", "alpha", "beta", "radius"}


def test_bound_loss_pickles_for_ray_workers():
    fn = make_loss("logconf", {"aux_coef": 0.3}, "classify")
    again = pickle.loads(pickle.dumps(fn))
    assert float(again(t(LZ), t(LY), 1.0)) == pytest.approx(logconf_by_hand(0.3), rel=1e-6)


@pytest.fixture
def scratch_loss():
    yield "scratch_l1"
    LOSSES.pop("scratch_l1", None)


def test_adding_a_loss_is_one_decorated_function(scratch_loss):
    @register_loss(scratch_loss, params={"scale": 2.0}, kinds=("classify",))
    def _l1(logits, targets, progress, scale):
        """Scaled L1 between sigmoid(z) and y."""
        return scale * (torch.sigmoid(logits) - targets).abs().mean()

    assert "scale" in loss_param_names()
    assert get_loss(scratch_loss).doc == "Scaled L1 between sigmoid(z) and y."
    got = float(make_loss(scratch_loss, {"scale": 3.0}, "classify")(t([0.0]), t([1.0]), 0.0))
    assert got == pytest.approx(1.5)
    with pytest.raises(ValueError, match="already registered"):
        register_loss(scratch_loss)(_l1)


def test_unknown_loss_lists_the_available_ones():
    with pytest.raises(UserError, match=r"unknown loss 'nope'; available: .*logconf.*xent"):
        get_loss("nope")
    with pytest.raises(UserError, match="unknown loss"):
        make_loss("nope", None, "classify")


def test_unknown_param_names_the_param_and_the_loss():
    with pytest.raises(UserError, match=r"'radius'.*'logconf'.*aux_coef, warmup_frac"):
        make_loss("logconf", {"radius": 0.1}, "classify")
    with pytest.raises(UserError, match=r"'aux_coef'.*'xent'.*\(none\)"):
        make_loss("xent", {"aux_coef": 0.1}, "classify")


def test_wrong_kind_is_a_user_error():
    with pytest.raises(UserError, match=r"'bt' does not support classify tasks; losses for classify: .*xent"):
        make_loss("bt", None, "classify")
    with pytest.raises(UserError, match="unknown task kind"):
        get_loss("xent", "regression")


@pytest.mark.parametrize(
    "params",
    [{"aux_coef": 1.5}, {"aux_coef": -0.1}, {"warmup_frac": float("nan")}, {"aux_coef": "big"}, {"aux_coef": True}],
)
def test_invalid_param_values_are_user_errors(params):
    with pytest.raises(UserError, match="logconf"):
        make_loss("logconf", params, "classify")


def test_mismatched_sizes_raise():
    with pytest.raises(ValueError, match="differ"):
        losses.xent(t([0.0, 1.0]), t([1.0]), 0.0)
