"""Tasks described by data, not code: a `TaskSpec` (parsed from a task YAML) and the `SpecTask` it drives.

    name: my_reviews                 # default: the YAML file's stem
    kind: classify                   # classify | pairwise
    description: "..."               # optional
    label_meaning: sentiment_positive  # optional (default: the name); equal meanings = OOD pairs
    path: reviews.parquet            # your file(s), relative to this YAML; or
    files: [sst2/train.jsonl.gz]     # file(s) in the data dir (--data-dir / W2S_DATA_DIR)
    hub: {id: stanfordnlp/sst2, splits: [train, validation]}   # optional, used without a data dir
    text: "{title} {content}"        # classify: a column, or a template of columns (stripped)
    label: {column: sentiment, positive: [pos, 1], negative: [neg, 0]}   # or a 0/1 column's name
    group: question                  # optional column(s) rows share: kept in one split
    chosen: chosen                   # pairwise: the preferred response (or transcript) column
    rejected: rejected
    prompt: prompt                   # optional; texts are prompt + response, pairs grouped by prompt

Without `negative`, every label value not in `positive` is 0. Pairwise rows are (chosen,
rejected) in a seeded random order (label 1 = text_a is chosen); without `prompt` or `group`,
HH-style transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ...") are grouped by their shared prompt.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets

from w2s_ray.errors import UserError
from w2s_ray.tasks.base import RecordTask, TaskKind, binary, group_key
from w2s_ray.tasks.hub import HubSource
from w2s_ray.tasks.local import SUFFIXES, Record, file_stem, read_records, require_columns, require_file
from w2s_ray.yaml_lines import LMap

KINDS: tuple[str, ...] = ("classify", "pairwise")
KIND_KEYS: dict[str, tuple[str, ...]] = {"classify": ("text", "label"), "pairwise": ("chosen", "rejected", "prompt")}
KEYS: tuple[str, ...] = ("name", "kind", "description", "label_meaning", "path", "files", "hub", "group",
                         *KIND_KEYS["classify"], *KIND_KEYS["pairwise"])
LABEL_KEYS: tuple[str, ...] = ("column", "positive", "negative")
HUB_KEYS: tuple[str, ...] = ("id", "config", "splits", "data_dir")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}")


def label_key(value: Any) -> str:
    """How label values compare: case-folded text, so 1, "1", True and "true" match their like."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().casefold()


def text(value: Any) -> str:
    """A record field as text ('' for a missing/null value, so empty rows get dropped)."""
    return "" if value is None else str(value)


def hh_prompt(transcript: str) -> str:
    """An HH transcript up to its last assistant turn (what chosen and rejected share)."""
    return transcript.rsplit("\n\nAssistant:", 1)[0]


@dataclass(frozen=True)
class LabelMap:
    """Which values of `column` mean label 1 and 0 (no lists: the column holds 0/1 or true/false)."""

    column: str
    positive: tuple[Any, ...] = ()
    negative: tuple[Any, ...] = ()

    def value(self, rec: Record, source: str) -> int:
        raw = rec[self.column]
        if not self.positive:
            return binary(raw, self.column, source)
        key = label_key(raw)
        if key in {label_key(v) for v in self.positive}:
            return 1
        if not self.negative or key in {label_key(v) for v in self.negative}:
            return 0
        raise UserError(f"column {self.column!r} in {source} has value {raw!r}, outside the task's label mapping "
                        f"(positive: {list(self.positive)}, negative: {list(self.negative)})")


@dataclass(frozen=True)
class TaskSpec:
    """A validated task description (see the module docstring for the keys)."""

    name: str
    kind: TaskKind
    description: str
    label_meaning: str
    files: tuple[str, ...] = ()                # in the data dir
    paths: tuple[tuple[str, Path], ...] = ()   # your own files: (as written, resolved)
    hub: tuple[HubSource, ...] = ()
    text: str = "text"
    label: LabelMap = LabelMap("label")
    chosen: str = "chosen"
    rejected: str = "rejected"
    prompt: str | None = None
    group: tuple[str, ...] = ()

    @property
    def template_fields(self) -> tuple[str, ...] | None:
        """The columns of a `text` template, or None when `text` is a column name."""
        if "{" not in self.text:
            return None
        return tuple(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(self.text) if f is not None))

    def required(self) -> tuple[str, ...]:
        """The columns every record must have."""
        if self.kind == "classify":
            cols = [*(self.template_fields or (self.text,)), self.label.column]
        else:
            cols = [*([self.prompt] if self.prompt else []), self.chosen, self.rejected]
        return tuple(dict.fromkeys([*cols, *self.group]))

    def row(self, rec: Record, rng: random.Random, source: str, stats: Counter[str]) -> dict[str, Any] | None:
        """One record -> row fields (without `id`), or None to drop it."""
        group = group_key(*(rec[c] for c in self.group)) if self.group else None
        if self.kind == "classify":
            fields = self.template_fields
            shown = (self.text.format_map({f: text(rec[f]) for f in fields}).strip() if fields is not None
                     else text(rec[self.text]))
            row = {"text": shown, "label": self.label.value(rec, source)}
            return row if group is None else {**row, "group": group}
        chosen, rejected = text(rec[self.chosen]), text(rec[self.rejected])
        if self.prompt:
            prompt = text(rec[self.prompt])
            chosen, rejected = prompt + chosen, prompt + rejected
            group = group if group is not None else group_key(prompt)
        elif group is None and "\n\nAssistant:" in chosen and "\n\nAssistant:" in rejected:
            group = group_key(hh_prompt(chosen), hh_prompt(rejected))
        if chosen == rejected:
            stats["dropped_chosen_equals_rejected"] += 1
            return None
        label = int(rng.random() < 0.5)
        a, b = (chosen, rejected) if label else (rejected, chosen)
        row = {"text_a": a, "text_b": b, "label": label}
        return row if group is None else {**row, "group": group}


# --- parsing ---------------------------------------------------------------------------------

class _Where:
    """Builds the one-line errors of a task description: ``<file>:<line>: <key>: <problem>``."""

    def __init__(self, where: str, doc: Mapping[str, Any]) -> None:
        self.where, self.doc = where, doc

    def error(self, key: str, msg: str, node: Mapping[str, Any] | None = None) -> UserError:
        node = self.doc if node is None else node
        if isinstance(node, LMap):
            return UserError(f"{self.where}:{node.line_of(key)}: {key}: {msg}")
        return UserError(f"{self.where} {key}: {msg}")


def _strings(w: _Where, key: str, value: Any, node: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """A string or a non-empty list of strings (a comma-separated string from --task-option too)."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise w.error(key, f"must be a non-empty string or list of strings, got {value!r}", node)
    return tuple(v.strip() for v in items)


def _string(w: _Where, key: str, value: Any, node: Mapping[str, Any] | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise w.error(key, f"must be a non-empty string, got {value!r}", node)
    return value


def _unknown(w: _Where, node: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    for key in node:
        if key not in allowed:
            raise w.error(key, f"unknown {what} {key!r}; allowed: {', '.join(allowed)}", node)


def _label(w: _Where, value: Any) -> LabelMap:
    if isinstance(value, str):
        return LabelMap(_string(w, "label", value))
    if not isinstance(value, Mapping):
        raise w.error("label", f"must be a column name or {{column: ..., positive: [...]}}, got {value!r}")
    _unknown(w, value, LABEL_KEYS, "label key")
    if "column" not in value:
        raise w.error("label", "the label mapping needs `column:` (the column holding the label)")
    if "positive" not in value:
        raise w.error("label", "the label mapping needs `positive:` (the values meaning label 1)")
    pos, neg = (tuple(v if isinstance(v, list) else [v]) for v in (value["positive"], value.get("negative", [])))
    if not pos:
        raise w.error("positive", "must list at least one value", value)
    both = {label_key(v) for v in pos} & {label_key(v) for v in neg}
    if both:
        raise w.error("negative", f"value {min(both)!r} is also in positive", value)
    return LabelMap(_string(w, "column", value["column"], value), pos, neg)


def _hub(w: _Where, value: Any) -> tuple[HubSource, ...]:
    out = []
    for src in value if isinstance(value, list) else [value]:
        if not isinstance(src, Mapping) or "id" not in src:
            raise w.error("hub", f"each hub source is a mapping with `id:` (and config, splits), got {src!r}")
        _unknown(w, src, HUB_KEYS, "hub key")
        splits = _strings(w, "splits", src.get("splits", ["train"]), src)
        config, data_dir = src.get("config"), src.get("data_dir")
        out.append(HubSource(_string(w, "id", src["id"], src), config and _string(w, "config", config, src),
                             splits, data_dir and _string(w, "data_dir", data_dir, src)))
    return tuple(out)


def _paths(w: _Where, value: Any, base_dir: Path) -> tuple[tuple[str, Path], ...]:
    out = []
    for shown in _strings(w, "path", value):
        if not shown.endswith(SUFFIXES):
            raise w.error("path", f"{shown!r} has an unsupported format; expected one of {', '.join(SUFFIXES)}")
        path = Path(shown).expanduser()
        out.append((shown, path if path.is_absolute() else base_dir / path))
    return tuple(out)


def parse_spec(doc: Mapping[str, Any], where: str, base_dir: Path, default_name: str) -> TaskSpec:
    """Validate a task description; UserError ``<where>:<line>: <key>: <problem>`` for the first fault.

    Relative `path` entries resolve against `base_dir` (the YAML's folder).
    """
    w = _Where(where, doc)
    _unknown(w, doc, KEYS, "key")
    if "kind" not in doc:
        raise w.error("kind", f"missing; set `kind:` to one of {', '.join(KINDS)}")
    kind = doc["kind"]
    if kind not in KINDS:
        raise w.error("kind", f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    other = next(k for k in KINDS if k != kind)
    for key in KIND_KEYS[other]:
        if key in doc:
            raise w.error(key, f"only for {other} tasks (this task's kind is {kind})")
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise w.error("name", f"{name!r} is not a plain task name; set `name:` to letters, digits and . _ + = -")
    if ("path" in doc) == ("files" in doc):
        raise w.error("path", "give exactly one of `path:` (your own files) and `files:` (files in the data dir)")
    spec = TaskSpec(
        name=name, kind=kind,
        description=_string(w, "description", doc["description"]) if "description" in doc else "",
        label_meaning=_string(w, "label_meaning", doc.get("label_meaning", name)),
        files=_strings(w, "files", doc["files"]) if "files" in doc else (),
        paths=_paths(w, doc["path"], base_dir) if "path" in doc else (),
        hub=_hub(w, doc["hub"]) if "hub" in doc else (),
        group=_strings(w, "group", doc["group"]) if "group" in doc else (),
    )
    if kind == "classify":
        spec = replace(spec, text=_string(w, "text", doc.get("text", "text")),
                       label=_label(w, doc.get("label", "label")))
        try:
            fields = spec.template_fields
        except ValueError as exc:
            raise w.error("text", f"bad template {spec.text!r} ({exc})") from None
        bad = [f for f in fields or () if not f or not re.fullmatch(r"[^.\[\]!:]+", f)]
        if bad:
            raise w.error("text", f"template field {{{bad[0]}}} must name a column")
    else:
        spec = replace(spec, chosen=_string(w, "chosen", doc.get("chosen", "chosen")),
                       rejected=_string(w, "rejected", doc.get("rejected", "rejected")),
                       prompt=_string(w, "prompt", doc["prompt"]) if doc.get("prompt") is not None else None)
    return spec


# --- the task ----------------------------------------------------------------------------------

class SpecTask(RecordTask):
    """A task driven by a `TaskSpec`. `user` tasks come from your own YAML or data file.

    `options` (data-file tasks only) override the spec's columns, e.g. text=review, label=stars,
    positive=4,5; `doc` is the description they overlay.
    """

    def __init__(self, spec: TaskSpec, *, user: bool = False, options: dict[str, Any] | None = None,
                 doc: Mapping[str, Any] | None = None, where: str = "", base_dir: Path = Path(".")) -> None:
        self.spec, self.user = spec, user
        self.name, self.kind = spec.name, spec.kind
        self.label_meaning, self.description = spec.label_meaning, spec.description
        self.files, self.hub, self.required = spec.files, spec.hub, spec.required()  # type: ignore[misc]
        self.options = dict(options or {})
        self._doc, self._where, self._base_dir = dict(doc or {}), where, base_dir

    @property
    def local_only(self) -> bool:
        """True when the task reads only your own files (it needs neither a data dir nor the hub)."""
        return bool(self.spec.paths)

    def with_options(self, options: dict[str, Any]) -> SpecTask:
        """This task with its columns overridden by `options` (itself for the defaults)."""
        if options == self.options:
            return self
        doc = dict(self._doc)
        for key, value in options.items():
            if key in ("positive", "negative"):
                continue
            if value in ("", None):
                doc.pop(key, None)
            else:
                doc[key] = [v for v in str(value).split(",")] if key == "group" else str(value)
        pos, neg = options.get("positive"), options.get("negative")
        if pos not in ("", None):
            lists = {"positive": str(pos).split(",")}
            if neg not in ("", None):
                lists["negative"] = str(neg).split(",")
            doc["label"] = {"column": doc.get("label", "label"), **lists}
        elif neg not in ("", None):
            raise UserError(f"{self._where} negative: needs positive= too (the values meaning label 1)")
        spec = parse_spec(doc, self._where, self._base_dir, self.name)
        return SpecTask(spec, user=self.user, options=options, doc=self._doc, where=self._where,
                        base_dir=self._base_dir)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        self.with_options(options)  # a bad column option fails here, before any loading
        return options

    def records(self, data_dir: str | None, options: dict[str, Any]) -> Iterator[tuple[str, str, Record]]:
        if not self.spec.paths:
            yield from super().records(data_dir, options)
            return
        for shown, path in self.spec.paths:
            source = f"file {str(path)!r}"
            recs = read_records(require_file(path))
            require_columns(recs, self.required, source)
            stem = file_stem(shown)
            for i, rec in enumerate(recs):
                yield f"{stem}:{i}", source, rec

    def origin(self, data_dir: str | None) -> str:
        if self.spec.paths:
            return ", ".join(str(p) for _, p in self.spec.paths)
        return super().origin(data_dir)

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> dict[str, Any] | None:
        return self.spec.row(rec, rng, source, stats)

    def load(self, data_dir: str | None, options: dict[str, Any]) -> datasets.Dataset:
        task = self.with_options(self.resolve_options(options))
        return RecordTask.load(task, data_dir, options)
