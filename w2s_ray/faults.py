"""Deterministic fault injection for reliability tests.

Set ``W2S_FAULT_DIR`` to a directory. Creating the file ``<dir>/<point>`` arms a fault at
that named point; the first process to reach it removes the file (so a retry proceeds)
and then dies the way the file says: ``kill`` (SIGKILL itself, the default) or ``raise``.
Points: ``worker.<stage>.after_epoch_<n>``, ``stage.<stage>.before_publish``,
``driver.after_trials_<n>``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


class InjectedFault(RuntimeError):
    """Raised at an armed fault point whose action is ``raise``."""


def fault_point(point: str) -> None:
    """Die here if a test armed this point."""
    root = os.environ.get("W2S_FAULT_DIR")
    if not root:
        return
    flag = Path(root) / point
    try:
        action = flag.read_text().strip() or "kill"
        flag.unlink()
    except FileNotFoundError:
        return
    if action == "raise":
        raise InjectedFault(f"injected fault at {point}")
    os.kill(os.getpid(), signal.SIGKILL)


def arm(fault_dir: str | os.PathLike[str], point: str, action: str = "kill") -> Path:
    """Arm a fault point (used by tests)."""
    flag = Path(fault_dir) / point
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text(action)
    return flag
