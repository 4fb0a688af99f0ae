"""``include:``: a space file built on a base file (lm-evaluation-harness style).

``include: <file>`` names the base, relative to the including file or, as a bare name, in
``search_spaces/``. The including file's keys override the base's: top-level keys replace
the base's; ``params`` are merged per parameter (a parameter given again replaces the base's
whole, one set to ``null`` is removed, a new one is appended); ``baseline`` is replaced whole.
A base may include another. Every merged key keeps the location of the file that holds it,
so errors point into that file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2s_ray.errors import UserError
from w2s_ray.search.space.files import available_hint, include_candidates
from w2s_ray.yaml_lines import LMap, display, read_yaml

__all__ = ["INCLUDE_KEY", "read_with_includes"]

INCLUDE_KEY = "include"


def read_with_includes(path: Path) -> tuple[Any, tuple[Path, ...]]:
    """The document of ``path`` with its includes resolved, and the files read (``path`` first)."""
    return _read(path, ())


def _read_space_file(path: Path, missing_hint: str = "") -> Any:
    """Read and parse the space file ``path``; ``missing_hint`` ends the not-found error."""
    where = display(path)
    if not path.exists():
        raise UserError(f"search space file not found: {where}{missing_hint}")
    if not path.is_file():
        raise UserError(f"search space path is not a file: {where}")
    return read_yaml(path, where, "search space")


def _read(path: Path, chain: tuple[Path, ...]) -> tuple[Any, tuple[Path, ...]]:
    doc = _read_space_file(path, available_hint() if not chain else "")
    if not isinstance(doc, LMap) or INCLUDE_KEY not in doc:
        return doc, (path,)
    loc, name = doc.key_locs[INCLUDE_KEY], doc[INCLUDE_KEY]
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{loc}: {INCLUDE_KEY}: must be a file name, got {name!r}")
    tried = include_candidates(name, path)
    base_path = next((p for p in tried if p.is_file()), None)
    if base_path is None:
        looked = ", ".join(display(p) for p in tried)
        raise UserError(f"{loc}: {INCLUDE_KEY}: {name!r} not found (looked for {looked})")
    seen = [p.resolve() for p in (*chain, path)]
    if base_path.resolve() in seen:
        cycle = " -> ".join(display(p) for p in (*chain, path, base_path)[seen.index(base_path.resolve()):])
        raise UserError(f"{loc}: {INCLUDE_KEY}: include cycle {cycle}")
    base, files = _read(base_path, (*chain, path))
    if base is None:
        raise UserError(f"{display(base_path)}:1: included search space is empty")
    if not isinstance(base, LMap):
        raise UserError(f"{display(base_path)}:1: included search space must be a mapping, got {type(base).__name__}")
    return merge(base, doc), (path, *files)


def merge(base: LMap, over: LMap) -> LMap:
    """``over``'s keys on top of ``base``'s (``include`` itself dropped); inputs are not changed."""
    out = LMap(over.loc)
    for src in (base, over):
        for key, value in src.items():
            if key == INCLUDE_KEY:
                continue
            if key == "params" and src is over and isinstance(value, LMap) and isinstance(out.get(key), LMap):
                value = _merge_params(out[key], value)
            out[key] = value
            out.key_locs[key] = src.key_locs[key]
    return out


def _merge_params(base: LMap, over: LMap) -> LMap:
    out = LMap(over.loc)
    out.update(base)
    out.key_locs.update(base.key_locs)
    for name, raw in over.items():
        loc = over.key_locs[name]
        if raw is None:
            if name not in out:
                raise UserError(f"{loc}: params.{name}: null removes an included parameter, but none is named {name!r}")
            del out[name], out.key_locs[name]
            continue
        out[name] = raw  # an existing parameter keeps its place; a new one goes last
        out.key_locs[name] = loc
    return out
