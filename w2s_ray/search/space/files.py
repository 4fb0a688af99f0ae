"""Where search-space files are: the ``search_spaces/`` folder, a task's default, an include."""

from __future__ import annotations

import os
from pathlib import Path

from w2s_ray.errors import UserError

__all__ = ["SPACES_ENV", "available_hint", "default_space_path", "include_candidates", "spaces_dir"]

SPACES_ENV = "W2S_SPACES_DIR"


def spaces_dir() -> Path:
    """The ``search_spaces/`` folder: ``$W2S_SPACES_DIR``, else beside the package (repo root
    or an editable install), else ``./search_spaces``."""
    env = os.environ.get(SPACES_ENV)
    if env:
        return Path(env)
    candidates = [Path(__file__).resolve().parents[3] / "search_spaces", Path.cwd() / "search_spaces"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    return candidates[0]


def default_space_path(task: str, kind: str = "classify") -> Path:
    """``search_spaces/<task>.yaml``, else ``search_spaces/default_<kind>.yaml``."""
    root = spaces_dir()
    for cand in (root / f"{task}.yaml", root / f"default_{kind}.yaml"):
        if cand.is_file():
            return cand
    raise UserError(
        f"no search space for task {task!r}: neither {root / f'{task}.yaml'} nor "
        f"{root / f'default_{kind}.yaml'} exists; pass --space FILE"
    )


def include_candidates(name: str, including: Path) -> list[Path]:
    """Where ``include: <name>`` in file ``including`` may point, in the order tried.

    Relative to the including file's folder; a bare name (no folder part) also in
    ``spaces_dir()``. A name without a suffix is tried with ``.yaml`` too.
    """
    names = [name] if Path(name).suffix else [name, f"{name}.yaml"]
    roots = [including.parent]
    if Path(name).name == name and spaces_dir().resolve() != including.parent.resolve():
        roots.append(spaces_dir())
    return [root / n for root in roots for n in names]


def available_hint() -> str:
    """``; available in <dir>: a.yaml, b.yaml`` (empty when the folder has none)."""
    avail = sorted(p.name for p in spaces_dir().glob("*.yaml"))
    return f"; available in {spaces_dir()}: {', '.join(avail)}" if avail else ""
