"""Argument groups and input checks shared by the command lines."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn, Protocol

from w2s_ray.analysis.metrics import GAP_Z
from w2s_ray.config import SplitSizes
from w2s_ray.errors import EXIT_USAGE, UserError


def key_values(pairs: Iterable[str] | None, what: str) -> dict[str, Any]:
    """Parse ``k=v`` options; numbers become floats/ints, ``a,b`` stays a string."""
    out: dict[str, Any] = {}
    for item in pairs or []:
        if "=" not in item:
            raise UserError(f"{what} must look like key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _number(value.strip())
    return out


def _number(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def task_listing() -> str:
    """One line per registered task: name, kind and description."""
    from w2s_ray.tasks import TASKS  # lazy: the task registry imports datasets

    width = max(len(name) for name in TASKS)
    return "\n".join(f"{name:<{width}}  {task.kind:<8}  {task.description}" for name, task in sorted(TASKS.items()))


class _ListTasks(argparse.Action):
    """``--list-tasks``: print ``task_listing()`` and exit 0 (like ``--help``, before other checks)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(task_listing())
        parser.exit(0)


def task_arg(value: str) -> str:
    """``--task``: a name stays as given; a task YAML or data file is loaded and registered, giving its name."""
    from w2s_ray.tasks.user import is_task_path

    if not is_task_path(value):
        return value
    from w2s_ray.tasks import get_task

    return get_task(value).name


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--task", required=True, type=task_arg,
                   help="registered task name (see --list-tasks), your own task YAML (.yaml/.yml), or a data "
                        "file (.jsonl/.json/.csv[.gz], .parquet; columns via --task-option, see README)")
    g.add_argument("--list-tasks", action=_ListTasks,
                   help="print the registered tasks with their descriptions and exit")
    g.add_argument("--data-dir", default=os.environ.get("W2S_DATA_DIR"),
                   help="local data dir laid out like shared/data (default: $W2S_DATA_DIR, else the HF hub)")
    g.add_argument("--task-option", action="append", metavar="K=V", help="task option, e.g. source=qa_feedback")
    g.add_argument("--n-a", type=int, default=None, help="rows in split A (weak model's GT)")
    g.add_argument("--n-b", type=int, default=None, help="rows in split B (student's weak labels / ceiling's GT)")
    g.add_argument("--n-val", type=int, default=None, help="rows in the validation split")
    g.add_argument("--n-test", type=int, default=None, help="rows in the held-out test split")
    g.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True,
                   help="exactly balanced classes in every split (default; --no-balance: as sampled)")
    g.add_argument("--val-labels", type=int, default=None,
                   help="cap on GT validation labels used for selection (few-labels setting)")
    g.add_argument("--cache-dir", default=os.environ.get("W2S_CACHE_DIR"),
                   help="stage cache, local dir or s3:// / gs:// (default: $W2S_CACHE_DIR, else ./w2s_cache "
                        "for run and <storage>/cache for search)")


def add_gap_args(group: argparse._ArgumentGroup) -> None:
    """``--min-gap`` and ``--gap-z``: when the weak-ceiling gap is too small for PGR to mean anything."""
    group.add_argument("--min-gap", type=float, default=0.02, help="PGR is undefined below this ceiling−weak gap")
    group.add_argument("--gap-z", type=float, default=GAP_Z,
                       help="PGR is also undefined when ceiling−weak is within this many paired standard errors "
                            f"of zero on the labelled split, i.e. the gap may be noise (default {GAP_Z:g}; 0: off)")


class SplitSizeOptions(Protocol):
    """``--n-a/--n-b/--n-val/--n-test`` as parsed (None: not given), on a namespace or settings object."""

    @property
    def n_a(self) -> int | None: ...
    @property
    def n_b(self) -> int | None: ...
    @property
    def n_val(self) -> int | None: ...
    @property
    def n_test(self) -> int | None: ...


def split_sizes(args: SplitSizeOptions, default: SplitSizes) -> SplitSizes:
    """The given split sizes, the others from ``default``."""
    return SplitSizes(
        a=args.n_a if args.n_a is not None else default.a,
        b=args.n_b if args.n_b is not None else default.b,
        val=args.n_val if args.n_val is not None else default.val,
        test=args.n_test if args.n_test is not None else default.test,
    )


def positive(name: str, value: float | int | None, allow_zero: bool = False) -> None:
    """Refuse a negative (or, unless ``allow_zero``, zero) or non-finite number option."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value}")


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one ``error: …`` line and exit 2, like a UserError."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}; see {self.prog} --help\n")


SEED_MAX = 2**32 - 1  # numpy's RandomState accepts [0, 2**32)


def check_seeds(name: str, seeds: int | Iterable[int]) -> None:
    """Refuse seeds outside ``[0, 2**32)`` (numpy and the split code cannot use them)."""
    for seed in [seeds] if isinstance(seeds, int) else seeds:
        if not 0 <= seed <= SEED_MAX:
            raise UserError(f"{name} must be an integer in [0, {SEED_MAX}], got {seed}")


def check_split_sizes(args: SplitSizeOptions) -> None:
    """``--n-a/--n-b/--n-val/--n-test``, when given, must be >= 1."""
    for flag in ("n_a", "n_b", "n_val", "n_test"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 1 (rows in that split), got {value}")


def unwritable_reason(path: Path) -> str | None:
    """Why nothing can be created at ``path`` (None if it can): checks its nearest existing ancestor."""
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is read-only"
    return None


def check_dir(flag: str, uri: str | None) -> None:
    """A directory option (local path or ``s3://``/``gs://``) must be a writable or creatable directory."""
    if not uri:
        return
    from w2s_ray.search.storage import check_writable

    check_writable(uri, what=flag)


def check_output_file(flag: str, path: str | None) -> None:
    """A file the CLI writes at the end must be creatable now, before any training."""
    if not path:
        return
    target = Path(path).expanduser()
    if target.is_dir():
        raise UserError(f"{flag} {path} is a directory; pass a file path")
    reason = unwritable_reason(target if target.exists() else target.parent)
    if reason is None and target.exists() and not os.access(target, os.W_OK):
        reason = f"{target} is read-only"
    if reason:
        raise UserError(f"{flag} {path} cannot be written ({reason}); pass a path in a writable directory")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


def check_name(flag: str, name: str | None) -> None:
    """A name that becomes one path component: letters, digits, ``._+=-``, no separators or ``..``."""
    if name is None:
        return
    if not _NAME.fullmatch(name):
        raise UserError(f"{flag} {name!r} is not a plain name; use letters, digits and . _ + = - "
                        "(starting with a letter or digit, no '/', at most 200 characters)")
