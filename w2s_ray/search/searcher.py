"""Optuna through Ray Tune: early-stopped trials told as PRUNED, and concurrent trials told in index order."""

from __future__ import annotations

from typing import Any

from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from w2s_ray.search.settings import resolve_tell_lag
from w2s_ray.search.space import SearchSpace


class W2SOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that never reports a truncated value as a completed trial and, with a
    ``tell_lag``, makes every suggestion a function of the seed alone.

    A trial that ends without its final report (``final = 1``), e.g. stopped by ASHA, is told to
    Optuna as PRUNED, so TPE does not learn from a partial objective.

    Tell order: with trials running concurrently, which results TPE has seen when it samples
    trial k depends on which trials happened to finish first, so a rerun of the same seed
    searches other configs. With ``tell_lag = c`` (the concurrency), trial k is sampled only
    once trials 0..k-c have ended, with exactly those results told: later results are held back
    until no suggestion still to come may ignore them. A slot may then wait for an older trial
    (at most c - 1 trials stay in flight behind it). A lag above the concurrency lets free slots
    run ahead of a slow trial, and makes the configs independent of the concurrency.
    ``tell_lag = None`` tells each result as it arrives (Tune's default: no waiting, not
    reproducible under concurrency). The searcher's whole state is pickled by
    ``OptunaSearch.save``, so the order survives ``--resume``.
    """

    # class defaults: a searcher pickled before tell orders existed restores as "finish"
    _tell_lag: int | None = None
    _num_samples: int | None = None

    def __init__(self, *args: Any, tell_lag: int | None = None, num_samples: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tell_lag = tell_lag
        self._num_samples = num_samples  # after the last suggestion nothing is held back
        self._suggested: list[str] = []  # trial ids in the order they were sampled
        self._held: dict[str, tuple[dict | None, bool]] = {}  # ended, not yet told
        self._told = 0  # trials _suggested[:_told] are told

    def suggest(self, trial_id: str) -> dict | None:
        if self._tell_lag is not None and trial_id not in self._ot_trials:
            if not self._tell_through(len(self._suggested) - self._tell_lag):
                return None  # an older trial is still running: Tune asks again later
        config = super().suggest(trial_id)
        if self._tell_lag is not None and config is not None and trial_id not in self._suggested:
            self._suggested.append(trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not error and result is not None and not result.get("final"):
            result = None  # OptunaSearch tells PRUNED when there is no value and no error
        if self._tell_lag is None or trial_id not in self._suggested:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        self._held[trial_id] = (result, error)
        last = len(self._suggested) - 1
        if self._num_samples is None or len(self._suggested) < self._num_samples:
            last -= self._tell_lag - 1  # only what every later suggestion will see anyway
        self._tell_through(last)

    def _tell_through(self, last: int) -> bool:
        """Tell the held results of trials 0..last in index order; False while one of them runs."""
        while self._told <= last:
            trial_id = self._suggested[self._told]
            if trial_id not in self._held:
                return False
            result, error = self._held.pop(trial_id)
            super().on_trial_complete(trial_id, result=result, error=error)
            self._told += 1
        return True


def make_searcher(space: SearchSpace, seed: int, max_concurrent: int,
                  points: list[dict] | None = None, tell_order: str = "index",
                  num_samples: int | None = None, tell_lag: int | None = None) -> ConcurrencyLimiter:
    """Seeded TPE over a define-by-run space, baseline points (default: the space's) first, concurrency-limited.

    ``tell_order="index"`` makes the configs sampled a function of the seed and ``tell_lag``
    (default: ``max_concurrent``) alone, see ``W2SOptunaSearch``; ``"finish"`` tells results as
    trials end.
    """
    import optuna

    lag = resolve_tell_lag(tell_order, tell_lag, max_concurrent)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, len(space.baseline)))
    searcher = W2SOptunaSearch(
        space=space.define_by_run,
        metric="objective",
        mode="max",
        sampler=sampler,
        points_to_evaluate=points if points is not None else space.points_to_evaluate(),
        tell_lag=lag,
        num_samples=num_samples,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
