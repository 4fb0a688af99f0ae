"""Driver-side fault points for reliability tests (see ``w2s_ray.faults``).

Only installed when ``W2S_FAULT_DIR`` is set; otherwise the search runs without them.
"""

from __future__ import annotations

import os
from typing import Any

from ray.tune import Callback

from w2s_ray.faults import fault_point


class DriverFaultHooks(Callback):
    """Fires ``driver.after_trials_<n>`` in the driver when the ``n``-th distinct trial completes
    (and ``driver.trial_started_<n>`` when it starts).

    With the ``kill`` action the driver SIGKILLs itself right there: the trial's work is done
    (its student is in the cache) but Tune has not yet persisted its completion.
    """

    def __init__(self) -> None:
        self.completed: list[str] = []
        self.started: list[str] = []

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """``driver.trial_started_<n>`` when the ``n``-th distinct trial starts (after the MLflow
        callback, listed first, created its child run)."""
        if trial.trial_id not in self.started:
            self.started.append(trial.trial_id)
        fault_point(f"driver.trial_started_{len(self.started)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.completed:
            self.completed.append(trial.trial_id)
        fault_point(f"driver.after_trials_{len(self.completed)}")

    def get_state(self) -> dict[str, Any]:
        return {"completed": list(self.completed), "started": list(self.started)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.completed = list(state.get("completed", []))
        self.started = list(state.get("started", []))


def fault_callbacks() -> list[Callback]:
    """The driver's fault hooks when a test armed ``W2S_FAULT_DIR``, else none."""
    return [DriverFaultHooks()] if os.environ.get("W2S_FAULT_DIR") else []
