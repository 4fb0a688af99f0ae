"""YAML with locations: every mapping key and sequence item remembers ``<file>:<line>``.

The one YAML loader of search-space files and task files: a SafeLoader that also refuses
duplicate and non-string keys, and (unless told not to) reads ``1e-5`` as a float. Faults
become one ``UserError`` line ``<file>:<line>: <problem>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from w2s_ray.errors import UserError

__all__ = ["LMap", "LSeq", "Loc", "display", "parse_yaml", "read_yaml"]


@dataclass(frozen=True)
class Loc:
    """Where a YAML node starts: the file as shown to the user and its 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class LMap(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys are."""

    def __init__(self, loc: Loc) -> None:
        super().__init__()
        self.loc = loc
        self.key_locs: dict[str, Loc] = {}

    def line_of(self, key: str) -> int:
        """The line of ``key``, else of the mapping itself."""
        return self.key_locs[key].line if key in self.key_locs else self.loc.line


class LSeq(list[Any]):
    """A YAML sequence that remembers where it and each of its items are."""

    def __init__(self, loc: Loc) -> None:
        super().__init__()
        self.loc = loc
        self.locs: list[Loc] = []


def display(path: Path) -> str:
    """``path`` relative to the working directory when below it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _Fault(Exception):
    def __init__(self, line: int, msg: str) -> None:
        super().__init__(msg)
        self.line, self.msg = line, msg


class _Loader(yaml.SafeLoader):
    """SafeLoader building ``LMap``/``LSeq`` nodes for one file (``self.where``)."""

    where: str = "<string>"

    def loc(self, node: yaml.Node) -> Loc:
        return Loc(self.where, node.start_mark.line + 1)


class _ExponentLoader(_Loader):
    """``_Loader`` that also reads ``1e-5`` (no dot) as a float."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[LMap]:
    data = LMap(loader.loc(node))
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        loc = loader.loc(key_node)
        if not isinstance(key, str):
            raise _Fault(loc.line, f"mapping key {key!r} must be a string")
        if key in data:
            raise _Fault(loc.line, f"{key}: duplicate key (first on line {data.key_locs[key].line})")
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_locs[key] = loc


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Iterator[LSeq]:
    data = LSeq(loader.loc(node))
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=True))
        data.locs.append(loader.loc(child))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
# YAML 1.1 reads `1e-5` (no dot) as a string; read it as the float everybody means.
_ExponentLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, where: str, *, exponent_floats: bool = True) -> Any:
    """Parse ``text`` (named ``where`` in locations and errors) into ``LMap``/``LSeq``/scalars.

    ``exponent_floats=False`` keeps YAML 1.1's reading of ``1e-5`` as the string ``"1e-5"``.
    """
    loader = (_ExponentLoader if exponent_floats else _Loader)(text)
    loader.where = where
    try:
        return loader.get_single_data()
    except _Fault as exc:
        raise UserError(f"{where}:{exc.line}: {exc.msg}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise UserError(f"{where}:{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: invalid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


def read_yaml(path: Path, where: str, what: str, *, exponent_floats: bool = True) -> Any:
    """Read and parse the existing YAML file ``path``; a read fault is ``cannot read <what> <where>: ...``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} {where}: {exc}") from None
    return parse_yaml(text, where, exponent_floats=exponent_floats)
