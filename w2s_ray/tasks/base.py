"""The Task interface and `RecordTask`, the common "read records, format each one" task.

A task turns raw records (local files or hub rows) into a `datasets.Dataset` with columns
  classify: id (str), text (str), label (int 0/1)
  pairwise: id (str), text_a (str), text_b (str), label (int; 1 = text_a is preferred)
plus, for tasks whose rows share a question, passage or context, an optional `group` column:
the identities a row shares with others, as keys joined by GROUP_SEP (see `group_key`).
`splits.py` keeps rows that share a group key (or a text) in one split.
Row ids are stable (file stem + line number, or hub split + row index) and unique; a record
that becomes several rows (e.g. a question's correct and distractor rows) gives each row the
suffix `:<variant>`.
Any randomness in formatting (which distractor, which pair order) comes from a
`random.Random` seeded by the task name and the row id, so a row's text does not depend on the
split seed, on file order, or on which other rows were loaded.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import datasets

from w2s_ray.errors import UserError
from w2s_ray.tasks.hub import HubSource, hub_records
from w2s_ray.tasks.local import Record, data_file, file_stem, read_records, require_columns

TaskKind = Literal["classify", "pairwise"]
COLUMNS: dict[str, tuple[str, ...]] = {
    "classify": ("id", "text", "label"),
    "pairwise": ("id", "text_a", "text_b", "label"),
}
GROUP = "group"
GROUP_SEP = "\x1f"  # separates the keys of one `group` value


def columns(kind: TaskKind, grouped: bool = False) -> tuple[str, ...]:
    """The columns of a task's dataset (with `group` last when the task emits it)."""
    return (*COLUMNS[kind], GROUP) if grouped else COLUMNS[kind]


def features(kind: TaskKind, grouped: bool = False) -> datasets.Features:
    """Arrow features for `columns(kind, grouped)`."""
    return datasets.Features({c: datasets.Value("int64" if c == "label" else "string")
                              for c in columns(kind, grouped)})


FEATURES: dict[str, datasets.Features] = {kind: features(kind) for kind in COLUMNS}  # type: ignore[arg-type]


def group_key(*parts: Any) -> str:
    """A `group` value from the identities a row shares (empty parts are skipped).

    Each part is one key (a passage, a question); rows sharing any key are grouped.
    """
    keys = [" ".join(str(p).split()) for p in parts if p is not None]
    return GROUP_SEP.join(k for k in keys if k)


class Task(ABC):
    """One task: where its data comes from and how a record becomes a row.

    Tasks with equal `label_meaning` are valid OOD pairs (e.g. sst2 / imdb / amazon_polarity).
    `options` maps each allowed option name to its default.
    """

    name: str
    kind: TaskKind
    label_meaning: str
    hf_id: str
    options: dict[str, Any]
    description: str = ""

    def resolve_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with `options`; UserError on an unknown name or a bad value."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "(none)"
            raise UserError(f"unknown option {unknown[0]!r} for task {self.name!r}; allowed: {allowed}")
        return self.check_options({**self.options, **options})

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate and normalise option values (override in tasks that take options)."""
        return options

    @abstractmethod
    def load(self, data_dir: str | None, options: dict[str, Any]) -> datasets.Dataset:
        """All rows of the task; from `data_dir` if given, else from the hub."""


def binary(value: Any, column: str, source: str) -> int:
    """A 0/1 label from an int, bool or '0'/'1'/'True'/'False' string; UserError otherwise."""
    if isinstance(value, str):
        value = {"0": 0, "1": 1, "false": 0, "true": 1}.get(value.strip().lower(), value)
    if isinstance(value, bool) or value in (0, 1):
        return int(value)
    raise UserError(f"column {column!r} in {source} has value {value!r}; expected a binary label 0/1")


def choice_option(task: str, option: str, value: Any, allowed: Iterable[str]) -> str:
    """Check that a string option is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise UserError(f"option {option}={value!r} for task {task!r} is invalid; allowed: {', '.join(allowed)}")
    return value


def bool_option(task: str, option: str, value: Any) -> bool:
    """A boolean option, given as a bool or as true/false/1/0/yes/no (any case)."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    parsed = words.get(str(value).strip().lower())
    if parsed is None:
        raise UserError(f"option {option}={value!r} for task {task!r} is invalid; expected true or false")
    return parsed


def list_option(task: str, option: str, value: Any, allowed: Iterable[str]) -> tuple[str, ...]:
    """A non-empty subset of `allowed`, given as a list or a comma-separated string."""
    allowed = tuple(allowed)
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    items = [v for v in items if v]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        what = f"{bad[0]!r} is not" if bad else "an empty list is not"
        raise UserError(f"option {option} for task {task!r}: {what} allowed; choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))  # de-duplicated, order kept


def to_dataset(rows: list[dict[str, Any]], kind: TaskKind, name: str, origin: str,
               stats: dict[str, Any] | None = None) -> datasets.Dataset:
    """Rows -> Dataset with the task's exact columns; UserError if empty or single-class.

    `stats` (e.g. counts of dropped rows) go into `ds.info.description` as JSON.
    """
    if not rows:
        raise UserError(f"task {name!r}: no usable rows in {origin}")
    labels = {r["label"] for r in rows}
    if len(labels) < 2:
        raise UserError(
            f"task {name!r}: data in {origin} has a single class (label {labels.pop()} in all {len(rows)} rows)"
        )
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):  # a bug in a task, not bad input
        raise AssertionError(f"task {name!r} produced duplicate row ids")
    grouped = any(GROUP in r for r in rows)
    cols, feats = columns(kind, grouped), features(kind, grouped)
    description = json.dumps({"origin": origin, **(stats or {})}, sort_keys=True)
    info = datasets.DatasetInfo(dataset_name=name, features=feats, description=description)
    return datasets.Dataset.from_list([{c: r.get(c, "") if c == GROUP else r[c] for c in cols} for r in rows],
                                      features=feats, info=info)


class RecordTask(Task):
    """A task whose rows come one-for-one (or none) from records of local files or hub splits.

    Subclasses set `files` (relative to the data dir, read in order), `hub` (hub sources),
    `required` (columns every record must have) and implement `format`.
    """

    files: ClassVar[tuple[str, ...]] = ()
    hub: ClassVar[tuple[HubSource, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()

    @property
    def hf_id(self) -> str:  # type: ignore[override]
        return self.hub[0].hf_id if self.hub else ""

    def local_files(self, options: dict[str, Any]) -> tuple[str, ...]:
        return self.files

    def hub_sources(self, options: dict[str, Any]) -> tuple[HubSource, ...]:
        return self.hub

    def required_columns(self, options: dict[str, Any]) -> tuple[str, ...]:
        return self.required

    def records(self, data_dir: str | None, options: dict[str, Any]) -> Iterator[tuple[str, str, Record]]:
        """Yield `(row_id, source, record)`; `source` names the file or hub split (for errors)."""
        if data_dir is not None:
            for rel in self.local_files(options):
                path = data_file(data_dir, rel)
                recs = read_records(path)
                require_columns(recs, self.required_columns(options), f"file {str(path)!r}")
                stem = file_stem(rel)
                for i, rec in enumerate(recs):
                    yield f"{stem}:{i}", f"file {str(path)!r}", rec
            return
        sources = self.hub_sources(options)
        if not sources:
            raise UserError(f"task {self.name!r} has no Hugging Face dataset for options {options}; pass a data dir")
        for src in sources:
            for row_id, name, rec in hub_records(src):
                require_columns([rec], self.required_columns(options), f"hub dataset {name}")
                yield row_id, f"hub dataset {name}", rec

    @abstractmethod
    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> dict[str, Any] | list[dict[str, Any]] | None:
        """One record -> row fields (without `id`), a list of rows, or None to drop it (count why in `stats`).

        Rows of a list carry a `variant` name that suffixes their id.
        """

    def load(self, data_dir: str | None, options: dict[str, Any]) -> datasets.Dataset:
        options = self.resolve_options(options)  # idempotent; makes direct calls safe too
        stats: Counter[str] = Counter()
        rows = []
        for row_id, source, rec in self.records(data_dir, options):
            out = self.format(rec, random.Random(f"{self.name}:{row_id}"), options, source, stats)
            for row in [] if out is None else [out] if isinstance(out, dict) else out:
                if any(not str(row[c]).strip() for c in COLUMNS[self.kind] if c.startswith("text")):
                    stats["dropped_empty_text"] += 1
                    continue
                variant = row.pop("variant", None)
                rows.append({"id": row_id if variant is None else f"{row_id}:{variant}", **row})
        return to_dataset(rows, self.kind, self.name, self.origin(data_dir),
                          {"options": _jsonable(options), "stats": dict(stats)})

    def origin(self, data_dir: str | None) -> str:
        """Where the rows came from (for messages and the dataset's description)."""
        return str(Path(data_dir).expanduser()) if data_dir is not None else "the Hugging Face hub"


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
