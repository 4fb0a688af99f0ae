"""The Optuna side of a search space: a define-by-run function and the baseline points."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from w2s_ray.search.space.domain import range_distribution

if TYPE_CHECKING:
    from w2s_ray.search.space.model import SearchSpace

__all__ = ["define_by_run", "points_to_evaluate"]


def define_by_run(space: SearchSpace, trial: Any) -> dict[str, Any] | None:
    """Optuna define-by-run space for ``OptunaSearch(space=space.define_by_run)``.

    Suggests the active parameters in dependency order (a conditional parameter is
    suggested only when its ``when`` holds) and returns the active constants, or
    ``None`` when there are none (Ray's define-by-run contract).
    """
    chosen: dict[str, Any] = {}
    constants: dict[str, Any] = {}
    for name, spec in space.params.items():
        if not space.is_active(name, chosen):
            continue
        if spec.type == "fixed":
            constants[name] = chosen[name] = spec.value
        elif spec.type == "categorical":
            chosen[name] = trial.suggest_categorical(name, list(spec.choices))
        else:
            dist = range_distribution(spec.type, *spec.bounds, spec.log, spec.step)
            suggest = trial.suggest_int if spec.type == "int" else trial.suggest_float
            chosen[name] = suggest(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return constants or None


def points_to_evaluate(space: SearchSpace) -> list[dict[str, Any]]:
    """Baseline points for ``OptunaSearch(points_to_evaluate=...)``.

    Each holds exactly the parameters ``define_by_run`` suggests for it (constants are
    left out: ``define_by_run`` returns them). Without a ``baseline`` in the file, the
    defaults are the baseline.
    """
    points = space.baseline or [{}]
    out = []
    for point in points:
        config = space.complete_or_raise(point)
        out.append({k: v for k, v in config.items() if space.params[k].type != "fixed"})
    return out
