"""Log levels for a local search's Ray worker processes (a ``worker_process_setup_hook``)."""

from __future__ import annotations

import logging

QUIET_LOGGERS: dict[str, int] = {
    # Local Ray runs without a dashboard, so there is no State API: each TorchTrainer's
    # placement-group cleaner then warns once a second that it cannot query the controller.
    # Locally the cleaner has nothing to do (the whole cluster ends with the driver).
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": logging.ERROR,
}
SETUP_HOOK = f"{__name__}.quiet_worker_logs"


def quiet_worker_logs() -> None:
    """Raise the level of the loggers in ``QUIET_LOGGERS`` in this process."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
