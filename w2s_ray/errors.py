"""User-facing errors: one clear line, exit code 2, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., int | None])


class UserError(Exception):
    """Bad input from the user (unknown name, malformed file, unreachable server...).

    Raised before any training starts; CLIs turn it into one line on stderr and exit code 2.
    """


def unknown_name(kind: str, name: str, available: Iterable[str]) -> UserError:
    """The standard 'unknown X' error, listing what is available (lm-eval-harness style)."""
    names = ", ".join(sorted(available))
    return UserError(f"unknown {kind} {name!r}; available: {names}")


def cli_entry(fn: F) -> Callable[..., int]:
    """Wrap a CLI `main` so a UserError prints `error: <message>` and exits 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            rc = fn(*args, **kwargs)
        except UserError as exc:
            msg = " ".join(str(exc).split("\n"))
            print(f"error: {msg}", file=sys.stderr)
            return EXIT_USAGE
        return int(rc or 0)

    return wrapper
