"""``load_space``: read a space file (following ``include:``) and validate it for a task kind."""

from __future__ import annotations

import os
from pathlib import Path

from w2s_ray.search.space.include import read_with_includes
from w2s_ray.search.space.knobs import registries
from w2s_ray.search.space.model import SearchSpace
from w2s_ray.search.space.validate import build_space

__all__ = ["load_space"]


def load_space(path: str | os.PathLike[str], kind: str, task: str | None = None) -> SearchSpace:
    """Read and fully validate a search space for a task of ``kind`` (``classify``/``pairwise``).

    Raises ``UserError`` with one line ``<file>:<line>: <key>: <problem>`` for any fault.
    """
    from w2s_ray.losses import KINDS  # lazy: the loss registry imports torch

    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; available: {', '.join(sorted(KINDS))}")
    path = Path(path)
    regs = registries()
    doc, files = read_with_includes(path)
    return build_space(doc, path, files, kind, task, regs)
