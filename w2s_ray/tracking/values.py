"""Turn configs and Tune results into MLflow-safe params, metrics and tags."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
NONFINITE_TAG_PREFIX = "w2s.nonfinite."

# Tune bookkeeping that is not worth a metric curve.
_SKIP_RESULT_KEYS = frozenset({"timestamp", "pid", "trial_id", "date", "hostname", "node_ip", "should_checkpoint"})
_BAD_KEY_CHARS = re.compile(r"[^\w.\- /:]")


def safe_key(key: str) -> str:
    """An MLflow-valid metric/param/tag key (alnum, `_ - . space / :`), at most 250 chars."""
    key = _BAD_KEY_CHARS.sub("_", str(key)).strip("/") or "_"
    key = re.sub(r"/+", "/", key).replace("/./", "/").replace("..", "_")
    return key[:MAX_KEY_LENGTH]


def flatten(d: Mapping[str, Any], sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings: {"a": {"b": 1}} -> {"a/b": 1}."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, sep, name))
        else:
            out[name] = value
    return out


def to_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flattened config as MLflow params `<prefix><a/b>` (string values, truncated to MLflow's limit)."""
    return {safe_key(prefix + k): str(v)[:MAX_PARAM_VALUE_LENGTH] for k, v in flatten(config).items()}


def to_tags(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flattened values as MLflow tags `<prefix><a/b>` (string values, truncated to MLflow's limit)."""
    return {safe_key(prefix + k): str(v)[:MAX_TAG_VALUE_LENGTH] for k, v in flatten(values).items()}


def numeric(value: Any) -> float | None:
    """The value as a float if it is a real number or bool (numpy scalars included), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # 0-d numpy / torch
        try:
            return numeric(value.item())
        except (TypeError, ValueError):
            return None
    return None


def split_metrics(
    values: Mapping[str, Any], skip_prefixes: tuple[str, ...] = ("config/",)
) -> tuple[dict[str, float], dict[str, str]]:
    """Split a (flattened) result into finite metrics and tags recording non-finite values.

    Non-numeric values are dropped; NaN/inf values become tags `w2s.nonfinite.<key>` = "nan"/"inf",
    because a NaN PGR (undefined) is information, but not a plottable point.
    """
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for key, value in flatten(values).items():
        if key in _SKIP_RESULT_KEYS or key.startswith(skip_prefixes):
            continue
        number = numeric(value)
        if number is None:
            continue
        if math.isfinite(number):
            metrics[safe_key(key)] = number
        else:
            tags[safe_key(NONFINITE_TAG_PREFIX + key)] = str(number)
    return metrics, tags
