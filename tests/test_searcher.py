"""The Optuna searcher: baselines first, trials stopped early (ASHA) told to Optuna as PRUNED, and
concurrent trials told in index order so a seed fixes the configs searched."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from w2s_ray.search.searcher import make_searcher
from w2s_ray.search.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = textwrap.dedent(
    """\
    task: sst2
    params:
      lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
      loss: {type: categorical, choices: [xent, logconf]}
      aux_coef: {type: float, low: 0.1, high: 1.0, when: {loss: logconf}}
    baseline:
      - {loss: xent, lr: 5.0e-5}
      - {loss: logconf, lr: 5.0e-5, aux_coef: 0.5}
    """
)


@pytest.fixture
def searcher(tmp_path: Path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    # tells each result as it ends: these tests drive several trials at once by hand
    limiter = make_searcher(load_space(path, "classify", task="sst2"), seed=0, max_concurrent=1, tell_order="finish")
    return limiter.searcher


def study_states(searcher) -> dict[str, TrialState]:
    return {tid: searcher._ot_study.trials[t.number].state for tid, t in searcher._ot_trials.items()}


def test_baseline_points_come_first(searcher):
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    assert first == {"loss": "xent", "lr": 5e-5}
    assert second == {"loss": "logconf", "lr": 5e-5, "aux_coef": 0.5}


def test_trial_stopped_before_its_final_report_is_pruned_not_completed(searcher):
    for tid in ("done", "stopped"):
        searcher.suggest(tid)
        searcher.on_trial_result(tid, {"objective": 0.9, "training_iteration": 1, "final": 0})
    # the finished trial's final report has a lower value than the stopped trial's partial one
    searcher.on_trial_complete("done", {"objective": 0.3, "training_iteration": 2, "final": 1})
    searcher.on_trial_complete("stopped", {"objective": 0.9, "training_iteration": 1, "final": 0})
    states = study_states(searcher)
    assert states == {"done": TrialState.COMPLETE, "stopped": TrialState.PRUNED}
    completed = searcher._ot_study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.value for t in completed] == [0.3]  # the truncated 0.9 never became a completed value
    assert searcher._ot_study.best_value == 0.3


def test_failed_trial_is_failed(searcher):
    searcher.suggest("bad")
    searcher.on_trial_complete("bad", None, error=True)
    assert study_states(searcher) == {"bad": TrialState.FAIL}


def test_same_seed_same_suggestions(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)

    def suggestions() -> list[dict]:
        s = make_searcher(load_space(path, "classify", task="sst2"), seed=3, max_concurrent=1).searcher
        out = []
        for i in range(5):
            out.append(s.suggest(f"t{i}"))
            s.on_trial_complete(f"t{i}", {"objective": 0.1 * i, "final": 1})
        return out

    first, second = suggestions(), suggestions()
    assert first == second
    assert len({tuple(sorted(c.items())) for c in first}) == 5  # past the baselines, TPE explores


def score(config: dict) -> float:
    """A deterministic objective with an optimum inside the space, so TPE's choices depend on what it was told."""
    import math

    return -abs(math.log10(config["lr"]) + 4.0) + (0.3 if config["loss"] == "logconf" else 0.0)


def simulate(searcher, durations: list[float], n: int) -> list[dict]:
    """Run n trials through the limiter as Tune would: fill free slots, then end the trial due first."""
    clock, running, configs, attempts = 0.0, {}, [], 0
    while len(configs) < n or running:
        while len(configs) < n:
            trial_id = f"t{attempts}"  # Tune draws a fresh id for every attempt
            attempts += 1
            config = searcher.suggest(trial_id)
            if config is None:
                break
            running[trial_id] = (clock + durations[len(configs)], config)
            configs.append(config)
        assert running, "the searcher waits although no trial runs"
        trial_id = min(running, key=lambda t: running[t][0])
        clock, config = running.pop(trial_id)
        searcher.on_trial_complete(trial_id, {"objective": score(config), "final": 1})
    return configs


def durations(seed: int, n: int) -> list[float]:
    import random

    rng = random.Random(seed)
    return [rng.uniform(0.1, 3.0) for _ in range(n)]


def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


@pytest.mark.parametrize("concurrency", [2, 3])
def test_index_order_makes_concurrent_suggestions_independent_of_finish_order(tmp_path, concurrency):
    space = load_space(space_file(tmp_path), "classify", task="sst2")
    n = 14
    runs = [simulate(make_searcher(space, seed=1, max_concurrent=concurrency, num_samples=n), durations(s, n), n)
            for s in (0, 1, 2)]
    assert runs[0] == runs[1] == runs[2]
    assert len({tuple(sorted(c.items())) for c in runs[0]}) > 2  # past the baselines, TPE explores


def test_a_fixed_tell_lag_makes_the_configs_independent_of_the_concurrency(tmp_path):
    space = load_space(space_file(tmp_path), "classify", task="sst2")
    n = 14
    runs = [simulate(make_searcher(space, seed=1, max_concurrent=c, num_samples=n, tell_lag=4), durations(s, n), n)
            for c, s in ((1, 0), (2, 1), (3, 2), (4, 0))]
    assert runs[0] == runs[1] == runs[2] == runs[3]
    lag_is_concurrency = simulate(make_searcher(space, seed=1, max_concurrent=2, num_samples=n), durations(0, n), n)
    assert lag_is_concurrency != runs[0]  # the lag, not the seed alone, fixes which results TPE saw


def test_a_tell_lag_above_the_concurrency_lets_a_free_slot_run_ahead(tmp_path):
    limiter = make_searcher(load_space(space_file(tmp_path), "classify", task="sst2"), seed=0, max_concurrent=2,
                            num_samples=6, tell_lag=3)
    inner = limiter.searcher
    assert limiter.suggest("a") and limiter.suggest("b")
    limiter.on_trial_complete("b", {"objective": 0.5, "final": 1})
    assert limiter.suggest("c")  # trial 2 needs trials 0..-1 ended: "a" may still run
    limiter.on_trial_complete("c", {"objective": 0.4, "final": 1})
    assert limiter.suggest("d") is None  # trial 3 needs trial 0 ("a") ended
    assert inner._ot_study.get_trials(states=(TrialState.COMPLETE,)) == []
    limiter.on_trial_complete("a", {"objective": 0.2, "final": 1})
    assert limiter.suggest("d")
    assert [t.value for t in inner._ot_study.get_trials(states=(TrialState.COMPLETE,))] == [0.2]


@pytest.mark.parametrize("order, lag", [("finish", 2), ("index", 0)])
def test_make_searcher_rejects_a_lag_it_cannot_honour(tmp_path, order, lag):
    with pytest.raises(ValueError, match="tell_lag"):
        make_searcher(load_space(space_file(tmp_path), "classify", task="sst2"), seed=0, max_concurrent=2,
                      tell_order=order, tell_lag=lag)


def test_finish_order_depends_on_which_trial_ends_first(tmp_path):
    # the fault the index order removes: the same seed searches other configs when trials end in another order
    space = load_space(space_file(tmp_path), "classify", task="sst2")
    n = 14
    runs = [simulate(make_searcher(space, seed=1, max_concurrent=3, tell_order="finish"), durations(s, n), n)
            for s in (0, 1, 2)]
    assert not runs[0] == runs[1] == runs[2]


def test_index_order_waits_for_the_trial_c_places_back_and_tells_only_through_it(tmp_path):
    limiter = make_searcher(load_space(space_file(tmp_path), "classify", task="sst2"), seed=0, max_concurrent=2,
                            num_samples=4)
    inner = limiter.searcher
    assert limiter.suggest("a") and limiter.suggest("b")
    limiter.on_trial_complete("b", {"objective": 0.5, "final": 1})
    assert limiter.suggest("c") is None  # trial 0 ("a") still runs: sampling now would depend on timing
    assert inner._ot_study.get_trials(states=(TrialState.COMPLETE,)) == []  # b's result is held back
    limiter.on_trial_complete("a", {"objective": 0.2, "final": 1})
    assert [t.value for t in inner._ot_study.get_trials(states=(TrialState.COMPLETE,))] == [0.2]
    assert limiter.suggest("c")  # sampled with trial 0 told, not b: b is within c of trial 2
    assert [t.value for t in inner._ot_study.get_trials(states=(TrialState.COMPLETE,))] == [0.2]
    assert limiter.suggest("d")  # the last of num_samples, sampled with trials 0 and 1 told
    assert [t.value for t in inner._ot_study.get_trials(states=(TrialState.COMPLETE,))] == [0.2, 0.5]
    for trial_id in ("d", "c"):
        limiter.on_trial_complete(trial_id, {"objective": 0.1, "final": 1})
    # no suggestion is left to come, so nothing stays held back
    assert len(inner._ot_study.get_trials(states=(TrialState.COMPLETE,))) == 4


def test_index_order_state_survives_save_and_restore(tmp_path):
    space = load_space(space_file(tmp_path), "classify", task="sst2")
    limiter = make_searcher(space, seed=0, max_concurrent=2, num_samples=6)
    assert limiter.suggest("a") and limiter.suggest("b")
    limiter.on_trial_complete("b", {"objective": 0.5, "final": 1})
    limiter.searcher.save(str(tmp_path / "state.pkl"))
    restored = make_searcher(space, seed=0, max_concurrent=2, num_samples=6)
    restored.searcher.restore(str(tmp_path / "state.pkl"))
    assert restored.searcher.suggest("c") is None  # still waiting for "a", with b held back
    restored.searcher.on_trial_complete("a", {"objective": 0.2, "final": 1})
    assert restored.searcher.suggest("c")
