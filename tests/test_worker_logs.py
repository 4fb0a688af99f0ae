"""A local search's Ray workers run the log setup hook (no per-second State API warnings)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from w2s_ray.search.worker_logs import QUIET_LOGGERS, quiet_worker_logs

CHECK = textwrap.dedent(
    """\
    import logging, types
    import ray
    from w2s_ray.search.driver import init_ray
    from w2s_ray.search.worker_logs import QUIET_LOGGERS

    init_ray(types.SimpleNamespace(settings=types.SimpleNamespace(address=None)))

    @ray.remote
    def levels():
        return {name: logging.getLogger(name).getEffectiveLevel() for name in QUIET_LOGGERS}

    print("LEVELS", ray.get(levels.remote()) == QUIET_LOGGERS)
    ray.shutdown()
    """
)


def test_hook_sets_levels():
    name, level = next(iter(QUIET_LOGGERS.items()))
    logger = logging.getLogger(name)
    before = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        quiet_worker_logs()
        assert logger.level == level
    finally:
        logger.setLevel(before)


@pytest.mark.ray
def test_local_ray_workers_run_the_hook():
    tmp = tempfile.mkdtemp(prefix="w2slog-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": tmp, "TMPDIR": tmp, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEVELS True" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
