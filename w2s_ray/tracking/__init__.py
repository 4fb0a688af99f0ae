"""MLflow tracking for w2s_ray searches: parent/stage/trial runs, buffered writes, URI handling.

`MLflowTrialCallback` is imported lazily (it pulls in Ray Tune).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from w2s_ray.tracking.client import BufferedClient, LogReport
from w2s_ray.tracking.search_run import SearchTracker, find_search_run, search_key, unlogged_path
from w2s_ray.tracking.uri import (
    artifact_location_for,
    check_tracking_uri,
    default_artifact_dir,
    default_tracking_uri,
    resolve_tracking_uri,
)

if TYPE_CHECKING:
    from w2s_ray.tracking.callback import MLflowTrialCallback

__all__ = [
    "BufferedClient",
    "LogReport",
    "MLflowTrialCallback",
    "SearchTracker",
    "artifact_location_for",
    "check_tracking_uri",
    "default_artifact_dir",
    "default_tracking_uri",
    "find_search_run",
    "resolve_tracking_uri",
    "search_key",
    "unlogged_path",
]


def __getattr__(name: str) -> Any:
    if name == "MLflowTrialCallback":
        from w2s_ray.tracking.callback import MLflowTrialCallback

        return MLflowTrialCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
