"""The search record: a search exists from the moment its plan is validated.

``run_search`` writes ``<storage>/<name>/w2s/search_record.json`` before Ray starts and before
the first training, so a driver lost during the shared stages (before Tune saved any state)
can be continued with ``--resume``: the cache supplies what finished, Tune starts fresh.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from w2s_ray.tracking.client import _read_text, _write_text
from w2s_ray.tracking.uri import redact

if TYPE_CHECKING:
    from w2s_ray.search.driver import SearchPlan

RECORD_PATH = "w2s/search_record.json"


def record_path(exp_path: str) -> str:
    """Where a search's record lives (local path or remote URI)."""
    return f"{exp_path.rstrip('/')}/{RECORD_PATH}"


def read_search_record(exp_path: str) -> dict[str, Any] | None:
    """The record of the search at ``exp_path``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads(_read_text(record_path(exp_path)))
    except (FileNotFoundError, ValueError, OSError):
        return None


def write_search_record(plan: SearchPlan, settings: dict[str, Any]) -> dict[str, Any]:
    """Write (atomically: temp file + rename, or one object put) the plan's record; keeps ``created_at``
    and counts ``starts`` when the record exists already. Returns what was written.

    ``search_id`` is drawn once, when the search is first written, and kept on every resume: MLflow
    matches the search's parent run on it, so a search rerun under the same name after its storage
    was deleted gets a new parent run instead of writing into the old one."""
    old = read_search_record(plan.exp_path) or {}
    record = {
        "name": plan.name, "search_id": old.get("search_id") or uuid.uuid4().hex,
        "task": plan.task, "preset": plan.preset.name, "storage": plan.storage,
        "cache": plan.cache_uri, "tracking_uri": redact(plan.tracking_uri), "experiment": plan.experiment,
        "settings": settings,
        "created_at": old.get("created_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "starts": int(old.get("starts", 0)) + 1,
    }
    _write_text(record_path(plan.exp_path), json.dumps(record, indent=1, default=str))
    return record
