"""A YAML reader that remembers the line of every key, so faults read ``<file>:<line>: <problem>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from w2s_ray.errors import UserError


class LineMap(dict):
    """A YAML mapping that remembers its own line and the line of each key (1-based)."""

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}

    def line_of(self, key: str) -> int:
        """The line of `key`, else of the mapping itself."""
        return self.key_lines.get(key, self.line)


class _Fault(Exception):
    def __init__(self, line: int, msg: str) -> None:
        super().__init__(msg)
        self.line, self.msg = line, msg


class _Loader(yaml.SafeLoader):
    """SafeLoader building `LineMap`s; refuses duplicate and non-string keys."""


def _construct_map(loader: _Loader, node: yaml.MappingNode):
    data = LineMap(node.start_mark.line + 1)
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _Fault(line, f"mapping key {key!r} must be a string")
        if key in data:
            raise _Fault(line, f"{key}: duplicate key (first on line {data.key_lines[key]})")
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def read_yaml_map(path: Path, what: str) -> LineMap:
    """The top-level mapping of a YAML file; UserError ``<file>:<line>: ...`` for any fault."""
    where = str(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {where}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} {where}: {exc}") from None
    try:
        doc: Any = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except _Fault as exc:
        raise UserError(f"{where}:{exc.line}: {exc.msg}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise UserError(f"{where}:{mark.line + 1 if mark else 1}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, LineMap):
        raise UserError(f"{where}:1: a {what} must be a YAML mapping of keys, got {type(doc).__name__}")
    return doc
