"""Training losses for weak-to-strong students, as a registry: one decorated function per loss.

Conventions (shared with the trainer):

* every model outputs ONE scalar score ``z`` per example. For ``classify`` tasks ``z`` is the
  logit of label 1, ``p1 = sigmoid(z)`` (the same as the reference code's 2-class softmax over
  logits ``[0, z]``). For ``pairwise`` reward modelling the trainer passes the margin
  ``z = r(text_a) - r(text_b)`` and ``p(a preferred) = sigmoid(z)``;
* targets ``y`` are probabilities of label 1 in [0, 1]: soft weak labels or hard 0/1 GT;
* ``progress`` is the fraction of all training steps done (0..1), used by warmups.

A loss is ``fn(logits, targets, progress, **params) -> scalar``; ``make_loss`` binds its params.

References: openai/weak-to-strong ``weak_to_strong/loss.py`` (xent, product, logconf) and
EleutherAI/w2s ``w2s/loss.py`` (confidence window, log-entropy, logconf with step warmup).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from w2s_ray.errors import UserError, unknown_name

LossFn = Callable[..., torch.Tensor]
BoundLoss = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

KINDS: tuple[str, ...] = ("classify", "pairwise")
LOSS_DEFAULT: dict[str, str] = {"classify": "xent", "pairwise": "bt"}

# Valid ranges of loss parameters, by name (a name means the same thing in every loss).
PARAM_BOUNDS: dict[str, tuple[float, float]] = {
    "aux_coef": (0.0, 1.0),
    "warmup_frac": (0.0, 1.0),
    "alpha": (0.0, math.inf),
    "beta": (0.0, math.inf),
    "radius": (0.0, 0.5),
}


@dataclass(frozen=True)
class LossSpec:
    """One registered loss: its function, parameter defaults and the task kinds it serves."""

    name: str
    fn: LossFn
    params: dict[str, float]
    kinds: frozenset[str]
    doc: str


LOSSES: dict[str, LossSpec] = {}


def register_loss(
    name: str,
    params: dict[str, float] | None = None,
    kinds: Iterable[str] = KINDS,
    doc: str = "",
    bounds: dict[str, tuple[float, float]] | None = None,
) -> Callable[[LossFn], LossFn]:
    """Decorator registering ``fn(logits, targets, progress, **params)`` as loss ``name``.

    ``params`` maps parameter names to defaults; ``bounds`` adds valid ranges for new names.
    ``doc`` defaults to the first paragraph of the function's docstring.
    """
    kinds = frozenset(kinds)
    if not kinds or not kinds <= set(KINDS):
        raise ValueError(f"loss {name!r}: kinds must be a non-empty subset of {KINDS}, got {sorted(kinds)}")
    if name in LOSSES:
        raise ValueError(f"loss {name!r} is already registered")
    if bounds:
        PARAM_BOUNDS.update(bounds)

    def decorator(fn: LossFn) -> LossFn:
        text = doc or (fn.__doc__ or "").strip().split("\n\n")[0]
        defaults = {k: float(v) for k, v in (params or {}).items()}
        LOSSES[name] = LossSpec(name, fn, defaults, kinds, " ".join(text.split()))
        return fn

    return decorator


def get_loss(name: str, kind: str | None = None) -> LossSpec:
    """The registered loss ``name``; with ``kind``, also check that it serves that task kind."""
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    spec = LOSSES[name]
    if kind is not None:
        if kind not in KINDS:
            raise unknown_name("task kind", kind, KINDS)
        if kind not in spec.kinds:
            ok = sorted(n for n, s in LOSSES.items() if kind in s.kinds)
            raise UserError(f"loss {name!r} does not support {kind} tasks; losses for {kind}: {', '.join(ok)}")
    return spec


def loss_param_names() -> set[str]:
    """Every parameter name any registered loss accepts (for search-space validation)."""
    return {p for spec in LOSSES.values() for p in spec.params}


def check_param(loss: str, param: str, value: object) -> float:
    """``value`` as a float if it is a finite number inside ``param``'s bounds, else UserError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"loss {loss!r} parameter {param} must be a number, got {value!r}")
    value = float(value)
    lo, hi = PARAM_BOUNDS.get(param, (-math.inf, math.inf))
    if not math.isfinite(value) or not lo <= value <= hi:
        raise UserError(f"loss {loss!r} parameter {param}={value!r} is outside [{lo:g}, {hi:g}]")
    return value


def make_loss(name: str, params: dict[str, float] | None, kind: str) -> BoundLoss:
    """Loss ``name`` for a ``kind`` task with ``params`` validated and defaults filled in.

    Returns a picklable ``f(logits, targets, progress) -> scalar tensor``.
    """
    spec = get_loss(name, kind)
    given = dict(params or {})
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        avail = ", ".join(sorted(spec.params)) or "(none)"
        raise UserError(f"unknown parameter {unknown[0]!r} for loss {name!r}; its parameters: {avail}")
    bound = {k: check_param(name, k, given.get(k, default)) for k, default in spec.params.items()}
    return functools.partial(spec.fn, **bound)


# ---------------------------------------------------------------------------------------------
# helpers


def ramp(progress: float, warmup_frac: float) -> float:
    """Linear warmup factor in [0, 1]: ``min(1, progress / warmup_frac)`` (1 when no warmup).

    The OpenAI reference jumps (``coef = step_frac`` during warmup, then 1) - a known bug;
    EleutherAI/w2s ramps linearly (``min(1, step / warmup_steps)``), which is what we do.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    if warmup_frac <= 0:
        return 1.0
    return min(1.0, progress / warmup_frac)


def _soft_xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example ``-[y log sigmoid(z) + (1-y) log sigmoid(-z)]`` (numerically stable)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def _prep(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits, targets = logits.float().reshape(-1), targets.float().reshape(-1)
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in size")
    return logits, targets


def _harden_at_prior(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Student's hard predictions, thresholded so their positive rate matches the weak prior.

    Reference: ``threshold = quantile(p0, mean(y))``, hard label 1 iff ``p0 < threshold``.
    As ``p0 = sigmoid(-z)`` is decreasing in ``z`` this is ``z > quantile(z, 1 - mean(y))``
    (linear interpolation). Working on logits avoids ties from sigmoid saturating in float32.

    Scores exactly at the threshold are indistinguishable, so instead of all going to label 0
    (the reference) they share what is left of the prior's ``mean(y) * n`` positives equally:
    the batch's hardened positive rate then matches the prior. This matters for tiny or
    degenerate batches: a batch of 1 gets its own weak target (the reference always gave 0),
    and a batch of equal scores (e.g. an untrained zero head) gets ``mean(y)`` each.
    """
    z = logits.detach()
    prior = targets.detach().mean().clamp(0.0, 1.0)
    threshold = torch.quantile(z, 1.0 - prior)
    above, tied = z > threshold, z == threshold
    hard = above.float()
    if bool(tied.any()):
        share = ((prior * z.numel() - above.sum()) / tied.sum()).clamp(0.0, 1.0)
        hard = torch.where(tied, share.to(hard.dtype), hard)
    return hard


def _logconf(logits: torch.Tensor, targets: torch.Tensor, progress: float, aux_coef: float,
             warmup_frac: float) -> torch.Tensor:
    logits, targets = _prep(logits, targets)
    coef = aux_coef * ramp(progress, warmup_frac)
    hard = _harden_at_prior(logits, targets)
    # CE is linear in its target, so CE(z, (1-c) y + c h) = (1-c) CE(z, y) + c CE(z, h).
    target = (1.0 - coef) * targets + coef * hard
    return _soft_xent(logits, target).mean()


# ---------------------------------------------------------------------------------------------
# the losses


@register_loss("xent", params={})
def xent(logits: torch.Tensor, targets: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
    """Soft binary cross-entropy ``mean(-[y log s(z) + (1-y) log s(-z)])``, s = sigmoid.

    openai/weak-to-strong ``xent_loss`` (2-class softmax CE against soft labels).
    """
    logits, targets = _prep(logits, targets)
    return _soft_xent(logits, targets).mean()


@register_loss("logconf", params={"aux_coef": 0.5, "warmup_frac": 0.2})
def logconf(
    logits: torch.Tensor, targets: torch.Tensor, progress: float = 0.0, aux_coef: float = 0.5, warmup_frac: float = 0.2
) -> torch.Tensor:
    """Auxiliary confidence loss (Burns et al. 2023): ``(1-c) CE(z, y) + c CE(z, h)``.

    ``c = aux_coef * min(1, progress / warmup_frac)`` ramps linearly (the reference jumps);
    ``h`` = the student's own predictions hardened (detached) at the weak labels' class-prior
    quantile: ``h = [z > quantile(z, 1 - mean(y))]`` so the share of hardened positives in the
    batch matches ``mean(y)``. openai/weak-to-strong ``logconf_loss_fn``; EleutherAI/w2s
    ``log_confidence_loss``.
    """
    return _logconf(logits, targets, progress, aux_coef, warmup_frac)


@register_loss("product", params={"alpha": 1.0, "beta": 1.0})
def product(
    logits: torch.Tensor, targets: torch.Tensor, progress: float = 0.0, alpha: float = 1.0, beta: float = 1.0
) -> torch.Tensor:
    """CE against the detached product target ``t_c ∝ y_c^alpha · p_c^beta`` over the 2 classes.

    openai/weak-to-strong ``product_loss_fn`` (EleutherAI/w2s has no product loss). For two
    classes ``t1 = sigmoid(alpha·logit(y) + beta·z)``, computed that way so saturated students
    (p = 0 or 1 in float) give no 0/0; ``y^0 = 1`` (alpha = 0 ignores the weak labels).
    """
    logits, targets = _prep(logits, targets)
    y = targets.detach().clamp(0.0, 1.0)
    if alpha == 0:
        weak_logodds = torch.zeros_like(y)
    else:
        weak_logodds = alpha * (torch.log(y) - torch.log1p(-y))  # ±inf for hard labels
    target = torch.sigmoid(weak_logodds + beta * logits.detach())
    return _soft_xent(logits, target).mean()


@register_loss("window", params={"radius": 0.1})
def window(logits: torch.Tensor, targets: torch.Tensor, progress: float = 0.0, radius: float = 0.1) -> torch.Tensor:
    """Confidence-window loss: CE only where the STUDENT is uncertain, ``max(p, 1-p) < 0.5 + radius``.

    EleutherAI/w2s ``confidence_window_loss`` (default radius there 0.15): the sum of the
    per-example CE over uncertain examples divided by the whole batch size N (not by the
    number of uncertain examples). Confident examples contribute zero loss and zero gradient.
    """
    logits, targets = _prep(logits, targets)
    p1 = torch.sigmoid(logits.detach())
    uncertain = (torch.maximum(p1, 1.0 - p1) < 0.5 + radius).float()
    return (_soft_xent(logits, targets) * uncertain).sum() / logits.shape[0]


@register_loss("entropy", params={"aux_coef": 0.1, "warmup_frac": 0.2})
def entropy(
    logits: torch.Tensor, targets: torch.Tensor, progress: float = 0.0, aux_coef: float = 0.1, warmup_frac: float = 0.2
) -> torch.Tensor:
    """Entropy minimisation: ``(1-c) CE(z, y) + c H(sigmoid(z))``, c ramped as in ``logconf``.

    EleutherAI/w2s ``log_entropy_loss``: "similar to the loss in Burns et al., except that it
    uses an entropy term instead of a hardened quasi-entropy term", i.e. ``logconf`` with
    ``CE(z, h)`` replaced by the student's prediction entropy ``H(p) = -p log p - (1-p) log(1-p)``
    (gradient flows through both p's). Its optional batch balancing is not implemented.
    """
    logits, targets = _prep(logits, targets)
    coef = aux_coef * ramp(progress, warmup_frac)
    p1 = torch.sigmoid(logits)
    ent = _soft_xent(logits, p1)  # CE(p, p) = H(p), not detached
    return ((1.0 - coef) * _soft_xent(logits, targets) + coef * ent).mean()


@register_loss("kl", params={})
def kl(logits: torch.Tensor, targets: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
    """``mean KL(y || sigmoid(z))`` = xent minus the targets' entropy.

    Same gradient as ``xent``; its value is 0 at a perfect fit, so it reads as a misfit.
    """
    logits, targets = _prep(logits, targets)
    h_y = -(torch.xlogy(targets, targets) + torch.xlogy(1.0 - targets, 1.0 - targets))
    return (_soft_xent(logits, targets) - h_y).mean()


@register_loss("bt", params={}, kinds=("pairwise",))
def bt(logits: torch.Tensor, targets: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
    """Bradley-Terry with soft targets: ``mean(-[y log s(z) + (1-y) log s(-z)])``, z = r_a - r_b.

    ``y`` = probability that a is preferred. Numerically the same as ``xent`` on the margin.
    """
    logits, targets = _prep(logits, targets)
    return _soft_xent(logits, targets).mean()


@register_loss("bt_logconf", params={"aux_coef": 0.5, "warmup_frac": 0.2}, kinds=("pairwise",))
def bt_logconf(
    logits: torch.Tensor, targets: torch.Tensor, progress: float = 0.0, aux_coef: float = 0.5, warmup_frac: float = 0.2
) -> torch.Tensor:
    """Confidence loss for pairs: ``(1-c) BT(z, y) + c BT(z, h)`` on the margin z = r_a - r_b.

    ``h`` hardens the student's own preference at the weak labels' prior quantile
    (``h = [z > quantile(z, 1 - mean(y))]``); c ramps linearly as in ``logconf``.
    """
    return _logconf(logits, targets, progress, aux_coef, warmup_frac)
