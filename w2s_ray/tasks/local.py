"""Readers for data files: JSONL, JSON (a list of objects) and CSV, each plain or gzipped, and Parquet.

Used for a data dir laid out like `../shared/data` and for your own files. Every fault in a
file becomes a one-line `UserError` naming the file: missing dir or file, corrupt gzip or
Parquet, empty file, unparsable line, missing column.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from w2s_ray.errors import UserError

Record = dict[str, Any]


def require_dir(data_dir: str | Path) -> Path:
    """`data_dir` as a Path; UserError if it is not an existing directory."""
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise UserError(f"data dir {str(path)!r} does not exist or is not a directory")
    return path


def data_file(data_dir: str | Path, rel: str) -> Path:
    """The file `rel` under `data_dir`; UserError naming the expected path if it is absent."""
    path = require_dir(data_dir) / rel
    if not path.is_file():
        raise UserError(f"missing data file: expected {str(path)!r}")
    return path


def require_file(path: str | Path) -> Path:
    """`path` as a Path; UserError naming it if it is not an existing file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"missing data file: expected {str(path)!r}")
    return path


def _text(path: Path) -> str:
    """Text of a file (decompressed if it ends in .gz), with gzip/encoding faults as UserError."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise UserError(f"file {str(path)!r} is not a valid gzip file ({exc})") from None
    except OSError as exc:
        what = "is not a valid gzip file" if path.name.endswith(".gz") else "cannot be read"
        raise UserError(f"file {str(path)!r} {what} ({exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"file {str(path)!r} is not UTF-8 text ({exc})") from None
    if not text.strip():
        raise UserError(f"file {str(path)!r} is empty")
    return text


def _jsonl(path: Path, text: str) -> Iterator[Record]:
    for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"file {str(path)!r} line {lineno} is not valid JSON ({exc})") from None
        if not isinstance(rec, dict):
            raise UserError(f"file {str(path)!r} line {lineno} is not a JSON object")
        yield rec


def _json(path: Path, text: str) -> Iterator[Record]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"file {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserError(f"file {str(path)!r} must hold a JSON list of objects")
    yield from data


def _csv(path: Path, text: str) -> Iterator[Record]:
    try:
        yield from csv.DictReader(io.StringIO(text, newline=""))
    except csv.Error as exc:
        raise UserError(f"file {str(path)!r} is not valid CSV ({exc})") from None


def _parquet(path: Path) -> list[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"file {str(path)!r} is not a valid Parquet file ({' '.join(str(exc).split())})") from None


_READERS = {".jsonl.gz": _jsonl, ".json.gz": _json, ".csv.gz": _csv, ".jsonl": _jsonl, ".json": _json,
            ".csv": _csv}
SUFFIXES: tuple[str, ...] = (*_READERS, ".parquet")


def read_records(path: Path) -> list[Record]:
    """All records of a JSONL, JSON or CSV file (plain or .gz) or a Parquet file (UserError if it has none)."""
    if path.name.endswith(".parquet"):
        records = _parquet(path)
        if not records:
            raise UserError(f"file {str(path)!r} is empty (no records)")
        return records
    for suffix, reader in _READERS.items():
        if path.name.endswith(suffix):
            records = list(reader(path, _text(path)))
            if not records:
                raise UserError(f"file {str(path)!r} is empty (no records)")
            return records
    raise UserError(f"file {str(path)!r}: unsupported format; expected one of {', '.join(SUFFIXES)}")


def require_columns(records: Iterable[Record], columns: Iterable[str], source: str) -> None:
    """UserError naming the first missing column and the file (or hub split) it is missing from."""
    columns = tuple(columns)
    for i, rec in enumerate(records):
        for col in columns:
            if col not in rec:
                raise UserError(f"missing required column {col!r} in {source} (record {i})")


def file_stem(rel: str) -> str:
    """'sst2/train.jsonl.gz' -> 'sst2/train' (used to build stable row ids)."""
    for suffix in SUFFIXES:
        if rel.endswith(suffix):
            return rel[: -len(suffix)]
    return rel
