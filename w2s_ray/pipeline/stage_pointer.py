"""A pointer to a stage's weights in the stage cache, instead of a copy of them.

The stage cache is the one store of every stage's weights. A Tune trial checkpoint and an
MLflow artifact hold this small ``stage.json`` (cache URI, stage kind and key, the weights'
URI) rather than the weights, so each student's weights are written once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

POINTER_FILE = "stage.json"
POINTER_FORMAT = 1


def weights_uri(cache_uri: str, kind: str, key: str) -> str:
    """Where a stage's ``checkpoint/`` lives: ``file:///abs/...`` for a local cache, else the cache's own scheme."""
    if "://" in cache_uri and not cache_uri.startswith("file://"):
        return f"{cache_uri.rstrip('/')}/{kind}/{key}/checkpoint"
    root = Path(cache_uri.removeprefix("file://")).expanduser().resolve()
    return (root / kind / key / "checkpoint").as_uri()


def pointer(cache_uri: str, kind: str, key: str) -> dict[str, Any]:
    """The pointer's contents."""
    return {"format": POINTER_FORMAT, "cache_uri": cache_uri, "kind": kind, "key": key,
            "weights_uri": weights_uri(cache_uri, kind, key)}


def write_pointer(directory: Path, cache_uri: str, kind: str, key: str) -> Path:
    """Write ``stage.json`` into ``directory`` (created if missing); returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / POINTER_FILE).write_text(json.dumps(pointer(cache_uri, kind, key), indent=1, sort_keys=True))
    return directory


def read_pointer(directory: str | Path) -> dict[str, Any] | None:
    """The pointer in a checkpoint directory, or None when the directory holds real files."""
    path = Path(directory) / POINTER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "weights_uri" in data else None
