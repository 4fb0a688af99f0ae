"""Tasks from files: the shipped task YAMLs, your own task YAML, or a data file used as it is.

`--task` (and `get_task`) takes a registered name, a path to a task YAML (`.yaml`/`.yml`; see
`spec.py` for its keys), or a path to a data file (JSONL, JSON, CSV, plain or gzipped, or
Parquet). A data file with `chosen` and `rejected` columns is a pairwise task (with a `prompt`
column, texts are prompt + response); any other is a classify task with `text` and `label`
columns. Its columns can be renamed with task options: text, label, positive, negative, group
(classify); chosen, rejected, prompt, group (pairwise). Its name is the file's stem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from w2s_ray.errors import UserError
from w2s_ray.tasks.local import SUFFIXES, file_stem, read_records, require_file
from w2s_ray.tasks.spec import SpecTask, parse_spec
from w2s_ray.yaml_lines import LMap, read_yaml

YAML_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")
SHIPPED_DIR = Path(__file__).with_name("yaml")

_LOADED: dict[tuple[str, int, int], SpecTask] = {}  # (resolved path, mtime_ns, size) -> task


def is_task_path(value: str) -> bool:
    """True when `value` names a task YAML or a data file rather than a registered task."""
    return value.endswith(YAML_SUFFIXES) or value.endswith(SUFFIXES)


def read_task_yaml(path: Path) -> LMap:
    """The top-level mapping of a task YAML; UserError ``<file>:<line>: ...`` for any fault."""
    where = str(path)
    if not path.is_file():
        raise UserError(f"task file not found: {where}")
    doc = read_yaml(path, where, "task file", exponent_floats=False)
    if not isinstance(doc, LMap):
        got = "list" if isinstance(doc, list) else type(doc).__name__
        raise UserError(f"{where}:1: a task file must be a YAML mapping of keys, got {got}")
    return doc


def task_from_yaml(path: Path, *, user: bool = True) -> SpecTask:
    """The task a YAML file describes (relative `path:` entries resolve against its folder)."""
    doc = read_task_yaml(path)
    spec = parse_spec(doc, str(path), path.parent, path.name.rsplit(".", 1)[0])
    return SpecTask(spec, user=user)


def _columns(path: Path) -> set[str]:
    if path.name.endswith(".parquet"):
        try:
            return set(pq.read_schema(path).names)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
            raise UserError(f"file {str(path)!r} is not a valid Parquet file ({' '.join(str(exc).split())})") from None
    return set(read_records(path)[0])


def task_from_data_file(path: Path) -> SpecTask:
    """A task over one data file, its kind read from its columns (see the module docstring)."""
    cols = _columns(require_file(path))
    where = f"--task {path} --task-option"
    if {"chosen", "rejected"} <= cols:
        doc: dict[str, Any] = {"kind": "pairwise", "path": path.name}
        options: dict[str, Any] = {"chosen": "chosen", "rejected": "rejected",
                                   "prompt": "prompt" if "prompt" in cols else "", "group": ""}
    else:
        doc = {"kind": "classify", "path": path.name}
        options = {"text": "text", "label": "label", "positive": "", "negative": "", "group": ""}
    name = file_stem(path.name)
    folder = path.resolve().parent  # row ids are '<file stem>:<index>'
    spec = parse_spec({**doc, "name": name, **{k: v for k, v in options.items() if v}}, where, folder, name)
    return SpecTask(spec, user=True, options=options, doc={**doc, "name": name}, where=where, base_dir=folder)


def load_task_file(value: str) -> SpecTask:
    """The task of a task YAML or data file at `value`; the same object while the file is unchanged."""
    path = Path(value).expanduser()
    if not path.is_file():
        what = "task file" if value.endswith(YAML_SUFFIXES) else "data file"
        raise UserError(f"{what} not found: {value} (--task takes a task name, a task YAML or a data file)")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _LOADED:
        _LOADED[key] = task_from_yaml(path) if value.endswith(YAML_SUFFIXES) else task_from_data_file(path)
    return _LOADED[key]


def shipped_tasks() -> list[SpecTask]:
    """The task YAMLs shipped in `w2s_ray/tasks/yaml/`, in name order."""
    return [task_from_yaml(p, user=False) for p in sorted(SHIPPED_DIR.glob("*.yaml"))]
