"""Optuna through Ray Tune, with early-stopped trials told to Optuna as PRUNED."""

from __future__ import annotations

from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from w2s_ray.search.space import SearchSpace


class W2SOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that never reports a truncated value as a completed trial.

    A trial that ends without its final report (``final = 1``), e.g. stopped by ASHA, is
    told to Optuna as PRUNED, so TPE does not learn from a partial objective.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not error and result is not None and not result.get("final"):
            result = None  # OptunaSearch tells PRUNED when there is no value and no error
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(space: SearchSpace, seed: int, max_concurrent: int,
                  points: list[dict] | None = None) -> ConcurrencyLimiter:
    """Seeded TPE over a define-by-run space, baseline points (default: the space's) first, concurrency-limited."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, len(space.baseline)))
    searcher = W2SOptunaSearch(
        space=space.define_by_run,
        metric="objective",
        mode="max",
        sampler=sampler,
        points_to_evaluate=points if points is not None else space.points_to_evaluate(),
    )
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)

