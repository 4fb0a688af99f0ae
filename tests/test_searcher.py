"""The Optuna searcher: baselines first, and trials stopped early (ASHA) told to Optuna as PRUNED."""

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
    limiter = make_searcher(load_space(path, "classify", task="sst2"), seed=0, max_concurrent=1)
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
