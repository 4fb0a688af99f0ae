"""Shared stages trained concurrently, each as its own Ray Train run.

``compute_shared`` keeps its serial code; :func:`prefetch_shared` starts the weak and ceiling
candidates (independent of each other) on a bounded thread pool first, and swaps the
pipeline's executor for a :class:`DedupExecutor`: when the serial code reaches a stage that
is already training, it waits for that run instead of starting a second one, then reads the
published entry from the cache. Stage keys, results and the training count are therefore the
serial ones; only the order of the trainings changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from w2s_ray.train.executor import Executor, Job

if TYPE_CHECKING:
    from w2s_ray.pipeline.stages import Pipeline
    from w2s_ray.search.driver import SearchPlan

# Locally, two at once: bench/shared_concurrency.py on 2 cores (quick preset, 2 weak + 2 ceiling
# candidates) took 0.82 of the serial wall time, as one stage's Ray Train start-up overlaps the
# other's training (bench/README.md).
LOCAL_DEFAULT = 2


class DedupExecutor:
    """Runs at most ``limit`` jobs at once; a job whose cache entry is already being trained waits for it."""

    def __init__(self, inner: Executor, limit: int) -> None:
        self.inner = inner
        self._slots = threading.BoundedSemaphore(max(1, limit))
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, str], Future] = {}

    def run(self, job: Job, name: str) -> None:
        key = (getattr(job, "cache_kind", ""), getattr(job, "cache_key", ""))
        owner = False
        with self._lock:
            running = self._inflight.get(key) if all(key) else None
            if running is None and all(key):
                running, owner = Future(), True
                self._inflight[key] = running
        if running is not None and not owner:
            running.result()  # the same stage, trained by another thread: wait, then read the cache
            return
        with self._slots:
            try:
                self.inner.run(job, name)
            except BaseException as exc:
                if owner and running is not None:
                    running.set_exception(exc)
                    with self._lock:
                        self._inflight.pop(key, None)  # a later caller retries it
                raise
        if owner and running is not None:
            running.set_result(None)


class SharedPrefetch:
    """A pool of background stage calls; :meth:`close` waits for them and restores the executor."""

    def __init__(self, pipe: Any, limit: int) -> None:
        self.pipe = pipe
        self.limit = limit
        self._original = pipe.executor
        self._futures: list[Future] = []
        self._pool: ThreadPoolExecutor | None = None
        if limit > 1:
            pipe.executor = DedupExecutor(pipe.executor, limit)
            self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="w2s-shared")

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._pool is not None:
            self._futures.append(self._pool.submit(fn, *args))

    def close(self) -> None:
        """Wait for every background stage (their errors were already raised by the serial code
        that needed them, or are raised here) and give the pipeline its executor back."""
        if self._pool is None:
            return
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self.pipe.executor = self._original
            self._pool = None


def shared_concurrency(plan: SearchPlan) -> int:
    """Shared stages trained at once: ``--shared-concurrency``, else every candidate on a cluster
    (Ray queues the runs the cluster cannot hold yet, and an autoscaler adds nodes for them),
    else :data:`LOCAL_DEFAULT`. Probe references fit in-process in a second, so always 1 there."""
    if plan.reference_base.mode == "probe":
        return 1
    chosen = plan.settings.shared_concurrency
    if chosen is not None:
        return max(1, int(chosen))
    if plan.settings.address:
        return max(1, len(plan.preset.weak_grid or [{}]) + len(plan.preset.ceiling_grid or [{}]))
    return LOCAL_DEFAULT


def prefetch_shared(plan: SearchPlan, pipe: Pipeline, limit: int | None = None) -> SharedPrefetch:
    """Start the weak and the ceiling candidates in the background (the same calls as
    ``Pipeline.select`` makes, so the same stage keys); the caller then runs its serial code and
    calls :meth:`SharedPrefetch.close`."""
    prefetch = SharedPrefetch(pipe, shared_concurrency(plan) if limit is None else limit)
    for role, model, grid in (("weak", plan.weak, plan.references["weak"]),
                              ("ceiling", plan.strong, plan.references["ceiling"])):
        stage = pipe.weak if role == "weak" else pipe.ceiling
        for overrides in grid or [{}]:
            prefetch.submit(stage, model, plan.reference_base.replace(**overrides))
    return prefetch
