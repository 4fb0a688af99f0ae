"""What the student learns from: weak-label methods as a registry, one decorated function per method.

A method is ``fn(ctx, **params) -> (rows, targets)``: which rows of split B the student trains
on and their soft targets, given the labels on B of the weak model (or the last bootstrap link).
Methods that fit anything on B (the kNN / logistic-regression probes, strong-to-strong
iterations) are cross-fitted over the folds of B (:mod:`w2s_ray.pipeline.crossfit`): a row's new label
comes from a fit that never saw that row. Probe methods read the strong model's cached
activations, so they cost seconds.

References: EleutherAI/w2s ``probe_relabel`` / ``probe_filter`` (kNN k = 50, filter
contamination 0.1) and its strong-to-strong self-training.

Adding a method is one entry::

    @register_weak_labels("my_method", params={"k": Param(10, 1, 1000, integer=True)})
    def my_method(ctx: LabelContext, k: int) -> tuple[np.ndarray, np.ndarray]: ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from w2s_ray.errors import UserError, unknown_name
from w2s_ray.pipeline.crossfit import fold_split

DEFAULT_METHOD = "soft"


@dataclass(frozen=True)
class Param:
    """One method parameter: default, valid range (``high_open``: high excluded) and type."""

    default: float
    low: float
    high: float = math.inf
    integer: bool = False
    high_open: bool = False

    def check(self, method: str, name: str, value: Any) -> float | int:
        """``value`` converted, or a UserError naming the method, parameter and range."""
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.integer and ok_type and float(value) != int(value):
            ok_type = False
        if not ok_type or not math.isfinite(float(value)):
            what = "an integer" if self.integer else "a number"
            raise UserError(f"weak-label method {method!r} parameter {name} must be {what}, got {value!r}")
        value = int(value) if self.integer else float(value)
        above = value >= self.high if self.high_open else value > self.high
        if value < self.low or above:
            rng = f"[{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
            raise UserError(f"weak-label method {method!r} parameter {name}={value!r} is outside {rng}")
        return value


@dataclass
class LabelContext:
    """What a method may read: the labels on B, the folds of B and, lazily, features and relabelling."""

    probs: np.ndarray  # p(label 1) per row of B from the weak model or the last link
    kind: str  # classify | pairwise
    folds: np.ndarray  # fold id per row of B
    features: Callable[[], np.ndarray] | None = None  # the strong model's cached activations on B
    # cross-fitted relabelling of B by the student's own recipe: (targets, iteration) -> new labels
    relabel: Callable[[np.ndarray, int], np.ndarray] | None = None

    def strong_features(self) -> np.ndarray:
        """[n, d] features of B (pairs: the difference of the two texts' features)."""
        if self.features is None:
            raise RuntimeError("this weak-label method reads the strong model's features; none were given")
        x = np.asarray(self.features(), dtype=np.float32)
        return x[:, 0] - x[:, 1] if x.ndim == 3 else x


Method = Callable[..., tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class WeakLabelMethod:
    """One registered method: its function, parameters and whether it fits on B (cross-fitted)."""

    name: str
    fn: Method
    params: dict[str, Param]
    crossfit: bool
    reads_features: bool  # reads the strong model's cached activations
    doc: str
    legacy: Callable[[dict], dict] | None = None  # cache-key payload of the pre-registry policy


WEAK_LABELS: dict[str, WeakLabelMethod] = {}


def register_weak_labels(name: str, params: dict[str, Param] | None = None, crossfit: bool = False,
                         reads_features: bool = False, doc: str = "",
                         legacy: Callable[[dict], dict] | None = None) -> Callable[[Method], Method]:
    """Decorator registering ``fn(ctx, **params) -> (rows, targets)`` as weak-label method ``name``.

    ``crossfit``: it fits on B (so its labels depend on the fold count, which joins its key);
    ``reads_features``: it reads the strong model's activations; ``legacy``: the cache-key
    payload of a method that predates the registry.
    """
    if name in WEAK_LABELS:
        raise ValueError(f"weak-label method {name!r} is already registered")

    def decorator(fn: Method) -> Method:
        text = doc or (fn.__doc__ or "").strip().split("\n\n")[0]
        WEAK_LABELS[name] = WeakLabelMethod(name, fn, dict(params or {}), crossfit, reads_features,
                                            " ".join(text.split()), legacy)
        return fn

    return decorator


def get_method(name: str) -> WeakLabelMethod:
    if name not in WEAK_LABELS:
        raise unknown_name("weak-label method", name, WEAK_LABELS)
    return WEAK_LABELS[name]


def param_names() -> dict[str, Param]:
    """Every parameter name a method takes (the first method's definition, for space validation)."""
    out: dict[str, Param] = {}
    for method in WEAK_LABELS.values():
        for name, param in method.params.items():
            out.setdefault(name, param)
    return out


@dataclass(frozen=True)
class WeakLabels:
    """A chosen method and its parameters (defaults filled in by :meth:`resolved`)."""

    method: str = DEFAULT_METHOD
    params: dict[str, float] = field(default_factory=dict)

    @classmethod
    def legacy(cls, transform: str = "soft", filter_min_conf: float = 0.0) -> "WeakLabels":
        """The pre-registry knobs ``weak_label_transform`` / ``filter_min_conf`` as a method."""
        if transform not in ("soft", "hard"):
            raise UserError(f"unknown weak_label_transform {transform!r}; available: hard, soft")
        if filter_min_conf:
            return cls("confidence_filter", {"min_conf": float(filter_min_conf), "harden": int(transform == "hard")})
        return cls(transform)

    def resolved(self) -> dict[str, float | int]:
        """Every parameter of the method, validated (UserError on an unknown or out-of-range one)."""
        spec = get_method(self.method)
        unknown = sorted(set(self.params) - set(spec.params))
        if unknown:
            takers = sorted(n for n, m in WEAK_LABELS.items() if unknown[0] in m.params)
            raise UserError(f"weak-label method {self.method!r} has no parameter {unknown[0]!r} (its parameters: "
                            f"{', '.join(sorted(spec.params)) or 'none'}; methods that take it: "
                            f"{', '.join(takers) or 'none'})")
        return {k: p.check(self.method, k, self.params.get(k, p.default)) for k, p in spec.params.items()}

    def key(self, folds: int) -> dict[str, Any]:
        """What a student's cache key holds: this method's name and parameters (and the folds it fits over)."""
        spec = get_method(self.method)
        params = self.resolved()
        if spec.legacy is not None:  # the pre-registry policy's payload: cached students stay valid
            return spec.legacy(params)
        return {"method": self.method, "params": params, **({"folds": int(folds)} if spec.crossfit else {})}

    def apply(self, ctx: LabelContext) -> tuple[np.ndarray, np.ndarray]:
        """(kept row indices of B, targets for them)."""
        rows, targets = get_method(self.method).fn(ctx, **self.resolved())
        return np.asarray(rows, dtype=np.int64), np.asarray(targets, dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.resolved()}


# ---------------------------------------------------------------------------------------------
# cross-fitted probes on the strong model's features


def _standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, scale = train.mean(0), train.std(0) + 1e-6
    return [(x - mean) / scale for x in (train, *others)]


def knn_labels(x: np.ndarray, probs: np.ndarray, folds: np.ndarray, k: int) -> np.ndarray:
    """Cross-fitted kNN: each row's label is the mean weak label of its k nearest (cosine) rows in other folds."""
    unit = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    out = np.empty(len(x), dtype=np.float64)
    for fold in np.unique(folds):
        train, held = fold_split(folds, int(fold))
        sims = unit[held] @ unit[train].T
        kk = min(int(k), len(train))
        nearest = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        out[held] = probs[train][nearest].mean(1)
    return out


def logreg_labels(x: np.ndarray, probs: np.ndarray, folds: np.ndarray, C: float) -> np.ndarray:
    """Cross-fitted logistic regression on the (hardened) weak labels: p(label 1) of each held-out row."""
    from sklearn.linear_model import LogisticRegression

    out = np.empty(len(x), dtype=np.float64)
    for fold in np.unique(folds):
        train, held = fold_split(folds, int(fold))
        y = (probs[train] > 0.5).astype(int)
        if len(np.unique(y)) < 2:  # one class in the training folds: nothing to separate
            out[held] = float(y.mean())
            continue
        xt, xh = _standardize(x[train], x[held])
        model = LogisticRegression(C=float(C), max_iter=2000).fit(xt, y)
        out[held] = model.predict_proba(xh)[:, 1]
    return out


def _filter(probs: np.ndarray, probe: np.ndarray, contamination: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop the ``contamination`` share of rows where the probe disagrees most with the weak label."""
    drop = round(float(contamination) * len(probs))
    keep = np.sort(np.argsort(np.abs(probe - probs), kind="stable")[: max(1, len(probs) - drop)])
    return keep, probs[keep]


def _legacy(transform: str) -> Callable[[dict], dict]:
    return lambda p: {"transform": "hard" if transform == "hard" or p.get("harden") else "soft",
                      "filter_min_conf": float(p.get("min_conf", 0.0))}


K = Param(50, 1, 10_000, integer=True)
C = Param(1.0, 1e-6, 1e6)
CONTAMINATION = Param(0.1, 0.0, 1.0, high_open=True)


@register_weak_labels("soft", legacy=_legacy("soft"))
def soft(ctx: LabelContext) -> tuple[np.ndarray, np.ndarray]:
    """The weak model's probabilities as soft targets, every row (the paper's default)."""
    return np.arange(len(ctx.probs)), ctx.probs


@register_weak_labels("hard", legacy=_legacy("hard"))
def hard(ctx: LabelContext) -> tuple[np.ndarray, np.ndarray]:
    """The weak model's argmax (0/1) as targets, every row."""
    return np.arange(len(ctx.probs)), (ctx.probs > 0.5).astype(np.float64)


@register_weak_labels("confidence_filter", legacy=_legacy("soft"), params={
    "min_conf": Param(0.1, 0.0, 1.0, high_open=True), "harden": Param(0, 0, 1, integer=True)})
def confidence_filter(ctx: LabelContext, min_conf: float, harden: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows whose weak confidence |2p - 1| is below ``min_conf`` (never all: else the surer half stays)."""
    conf = np.abs(2 * ctx.probs - 1)
    keep = np.flatnonzero(conf >= min_conf)
    if len(keep) == 0:
        keep = np.sort(np.argsort(-conf, kind="stable")[: max(1, len(conf) // 2)])
    targets = ctx.probs[keep]
    return keep, (targets > 0.5).astype(np.float64) if harden else targets


@register_weak_labels("knn_relabel", reads_features=True, params={"k": K}, crossfit=True)
def knn_relabel(ctx: LabelContext, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's target is the mean weak label of its k nearest rows (strong features) in the other folds."""
    return np.arange(len(ctx.probs)), knn_labels(ctx.strong_features(), ctx.probs, ctx.folds, k)


@register_weak_labels("logreg_relabel", reads_features=True, params={"C": C}, crossfit=True)
def logreg_relabel(ctx: LabelContext, C: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Each row's target is a logistic-regression probe's p(label 1), fitted on the other folds' weak labels."""
    return np.arange(len(ctx.probs)), logreg_labels(ctx.strong_features(), ctx.probs, ctx.folds, C)


@register_weak_labels("knn_filter", reads_features=True, params={"k": K, "contamination": CONTAMINATION}, crossfit=True)
def knn_filter(ctx: LabelContext, k: int, contamination: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop the ``contamination`` share of rows where the cross-fitted kNN label disagrees most with the weak one."""
    return _filter(ctx.probs, knn_labels(ctx.strong_features(), ctx.probs, ctx.folds, k), contamination)


@register_weak_labels("logreg_filter", reads_features=True, params={"C": C, "contamination": CONTAMINATION},
                      crossfit=True)
def logreg_filter(ctx: LabelContext, C: float, contamination: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Drop the ``contamination`` share of rows where the cross-fitted logistic probe disagrees most."""
    return _filter(ctx.probs, logreg_labels(ctx.strong_features(), ctx.probs, ctx.folds, C), contamination)


@register_weak_labels("s2s", params={"s2s_iters": Param(1, 1, 10, integer=True)}, crossfit=True)
def s2s(ctx: LabelContext, s2s_iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Strong-to-strong: ``s2s_iters`` times, students (the student's recipe) relabel B, cross-fitted."""
    if ctx.relabel is None:
        raise RuntimeError("s2s needs a pipeline to train its relabelling students")
    labels = np.asarray(ctx.probs, dtype=np.float64)
    for iteration in range(1, s2s_iters + 1):
        labels = ctx.relabel(labels, iteration)
    return np.arange(len(labels)), labels
