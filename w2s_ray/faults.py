"""Deterministic fault injection for reliability tests.

Set ``W2S_FAULT_DIR`` to a directory. Creating the file ``<dir>/<point>`` (see :func:`arm`)
arms a fault at that named point; the first process to reach it removes the file (so a
retry proceeds) and then fails the way the file says:

- ``kill`` (the default): SIGKILL itself;
- ``raise``: raise :class:`InjectedFault`;
- ``hang``: write ``<dir>/<point>.fired`` (JSON: pid, node id) and block until killed from
  outside, e.g. by a test that then kills this process's Ray node (or this trial's actor);
- ``pause``: write ``<dir>/<point>.fired`` likewise and block until the test removes that file
  (e.g. after stopping the tracking server), then continue.

A second line ``only_on_node_with=<resource>`` restricts the fault to Ray processes on a node
that has that custom resource; everywhere else the point stays armed.

Points:

- ``worker.<stage>.after_epoch_<n>``: in a training worker, after epoch ``n``'s metrics and
  checkpoint were reported. Inside Ray Train the worker first waits until the Train
  controller has committed every report so far, so "after the checkpoint" is a fact, not a race.
- ``stage.<stage>.before_publish``: a stage's outputs are fully written to a private staging
  directory but not yet published to the cache (nor recorded in its ledger).
- ``driver.after_trials_<n>``: in the search driver, when the ``n``-th trial completes
  (``w2s_ray.search.fault_hooks``).
- ``driver.trial_started_<n>``: in the search driver, when the ``n``-th distinct trial has started
  (its MLflow child run exists), typically before Tune saved its experiment state again.
- ``driver.shared.after_weak``: in the search driver, once the weak model is selected and cached,
  before the ceiling (``compute_shared``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

ACTIONS = ("kill", "raise", "hang", "pause")
NODE_KEY = "only_on_node_with"


class InjectedFault(RuntimeError):
    """Raised at an armed fault point whose action is ``raise``."""


def fault_point(point: str) -> None:
    """Fail here if a test armed this point."""
    root = os.environ.get("W2S_FAULT_DIR")
    if not root:
        return
    flag = Path(root) / point
    try:
        lines = flag.read_text().split("\n")
    except FileNotFoundError:
        return
    action = lines[0].strip() or "kill"
    options = dict(line.strip().split("=", 1) for line in lines[1:] if "=" in line)
    if NODE_KEY in options and not _on_node_with(options[NODE_KEY]):
        return
    try:
        flag.unlink()
    except FileNotFoundError:  # another process got there first
        return
    if point.startswith("worker."):
        _wait_for_committed_reports()
    if action == "raise":
        raise InjectedFault(f"injected fault at {point}")
    sys.stdout.flush()
    sys.stderr.flush()
    if action in ("hang", "pause"):
        tmp = flag.with_name(f".{flag.name}.fired.tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "node_id": _node_id()}))
        os.replace(tmp, fired_path(flag))
        if action == "pause":
            while fired_path(flag).exists():  # until the test releases it
                time.sleep(0.2)
            return
        threading.Event().wait()  # until killed
    os.kill(os.getpid(), signal.SIGKILL)


def fired_path(flag: str | os.PathLike[str]) -> Path:
    """Where a ``hang`` fault announces that it fired."""
    flag = Path(flag)
    return flag.with_name(flag.name + ".fired")


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001
        return None


def _on_node_with(resource: str) -> bool:
    """Whether this process runs on a Ray node that has the custom resource ``resource``."""
    node = _node_id()
    if node is None:
        return False
    import ray

    return any(n.get("NodeID") == node and resource in n.get("Resources", {}) for n in ray.nodes())


def _wait_for_committed_reports() -> None:
    """Inside a Ray Train worker: block until the controller has registered every report so far.

    ``ray.train.report`` only queues a result for the controller to poll; dying right after it
    could lose the checkpoint. Outside Ray Train this is a no-op.
    """
    if "ray.train" not in sys.modules:
        return
    try:
        import ray.train

        ray.train.get_context().get_world_rank()
    except Exception:  # noqa: BLE001 - not a Ray Train worker
        return
    ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)


def arm(fault_dir: str | os.PathLike[str], point: str, action: str = "kill",
        only_on_node_with: str | None = None) -> Path:
    """Arm a fault point (used by tests); see the module docstring for actions and options."""
    if action not in ACTIONS:
        raise ValueError(f"unknown fault action {action!r}; available: {', '.join(ACTIONS)}")
    flag = Path(fault_dir) / point
    flag.parent.mkdir(parents=True, exist_ok=True)
    text = action + (f"\n{NODE_KEY}={only_on_node_with}" if only_on_node_with else "")
    tmp = flag.with_name(f".{flag.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, flag)  # a reader never sees a half-written flag
    return flag
