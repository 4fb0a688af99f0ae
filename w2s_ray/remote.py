"""Whether a storage location is remote: the one test every local-or-remote path uses."""

from __future__ import annotations

__all__ = ["is_remote"]


def is_remote(uri: str) -> bool:
    """True for a remote filesystem URI (``s3://``, ``gs://``, ...); False for a local path or ``file://``."""
    return "://" in uri and not uri.startswith("file://")
