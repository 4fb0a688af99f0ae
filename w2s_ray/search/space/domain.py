"""Values of one parameter: its Optuna distribution, membership, type coercion, midpoint.

Ranges are ``optuna.distributions`` objects, so what the loader accepts is what Optuna samples
from; categorical membership is checked here because Optuna's own treats ``True`` as ``1``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.distributions import FloatDistribution, IntDistribution

    from w2s_ray.search.space.model import ParamSpec

__all__ = [
    "as_type",
    "domain_problem",
    "is_int",
    "is_num",
    "midpoint",
    "range_distribution",
    "same",
    "tname",
    "unknown",
    "values",
]


def is_num(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same family: ``True`` is not ``1`` and ``"1"`` is not ``1``."""
    return a == b and isinstance(a, bool) == isinstance(b, bool) and isinstance(a, str) == isinstance(b, str)


def tname(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def unknown(kind: str, name: str, available: Iterable[str]) -> str:
    return f"unknown {kind} {name!r}; available: {', '.join(sorted(available))}"


def range_distribution(
    ptype: str, low: float, high: float, log: bool = False, step: float | None = None
) -> FloatDistribution | IntDistribution:
    """The Optuna distribution of a ``float``/``int`` range; ``ValueError`` if inconsistent.

    Optuna silently lowers ``high`` onto the step grid; the caller compares ``.high``.
    """
    from optuna.distributions import (  # lazy: optuna is heavy
        FloatDistribution,
        IntDistribution,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "high adjusted to the step grid" warning
        if ptype == "int":
            return IntDistribution(int(low), int(high), log=log, step=1 if step is None else int(step))
        return FloatDistribution(float(low), float(high), log=log, step=step)


def domain_problem(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` is not in ``spec``'s domain, or None if it is."""
    if spec.type == "fixed":
        return None if same(value, spec.value) else f"{value!r} differs from the fixed value {spec.value!r}"
    if spec.type == "categorical":
        if any(same(value, c) for c in spec.choices):
            return None
        return f"{value!r} is not one of the choices {list(spec.choices)}"
    if spec.type == "int" and not is_int(value):
        return f"{value!r} ({tname(value)}) is not an integer"
    if spec.type == "float" and not is_num(value):
        return f"{value!r} ({tname(value)}) is not a number"
    if not spec.low <= value <= spec.high:
        return f"{value!r} is outside [{spec.low}, {spec.high}]"
    dist = range_distribution(spec.type, *spec.bounds, spec.log, spec.step)
    if not dist._contains(dist.to_internal_repr(value)):  # in range, so off the step grid
        return f"{value!r} is not on the grid low + k*step (low {spec.low}, step {spec.step})"
    return None


def values(spec: ParamSpec) -> list[Any]:
    """All values a categorical/int/fixed parameter can take."""
    if spec.type == "fixed":
        return [spec.value]
    if spec.type == "categorical":
        return list(spec.choices)
    low, high = spec.bounds
    return list(range(int(low), int(high) + 1, int(spec.step or 1)))


def as_type(spec: ParamSpec, value: Any) -> Any:
    """``value`` (already in the domain) as the parameter's own type / choice object."""
    if spec.type == "float":
        return float(value)
    if spec.type == "int":
        return int(value)
    if spec.type == "categorical":
        return next(c for c in spec.choices if same(c, value))
    return value


def midpoint(spec: ParamSpec) -> Any:
    """Middle of a range (geometric for log ranges), snapped down onto the step grid."""
    low, high = spec.bounds
    mid = math.sqrt(low * high) if spec.log else (low + high) / 2
    if spec.type == "int":
        step = int(spec.step or 1)
        return int(low + math.floor((mid - low) / step + 1e-9) * step)
    if spec.step:
        return float(low + round((mid - low) / spec.step) * spec.step)
    return float(mid)
