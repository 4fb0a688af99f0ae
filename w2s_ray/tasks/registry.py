"""The task registry and the loading entry points.

Adding a task is one line: decorate its class with `@register` (the class is instantiated once).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import datasets

from w2s_ray.errors import unknown_name
from w2s_ray.tasks.base import Task

DATA_DIR_ENV = "W2S_DATA_DIR"

TASKS: dict[str, Task] = {}

T = TypeVar("T", bound=type[Task])


def register(cls: T) -> T:
    """Class decorator: add one instance of a Task subclass to `TASKS` under its `name`."""
    task = cls()
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    TASKS[task.name] = task
    return cls


def get_task(name: str) -> Task:
    """The registered task `name`; UserError listing the available tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise unknown_name("task", name, TASKS) from None


def ood_tasks(name: str) -> list[str]:
    """Other tasks with the same kind and `label_meaning` as `name` (valid OOD evaluation tasks)."""
    task = get_task(name)
    return sorted(n for n, t in TASKS.items()
                  if n != name and t.kind == task.kind and t.label_meaning == task.label_meaning)


def resolve_data_dir(data_dir: str | None) -> str | None:
    """`data_dir` if given, else env `W2S_DATA_DIR`, else None (load from the Hugging Face hub)."""
    if data_dir:
        return str(data_dir)
    return os.environ.get(DATA_DIR_ENV) or None


def check_data_source(data_dir: str | None) -> None:
    """With no data dir (argument or `W2S_DATA_DIR`), the hub must be usable: UserError otherwise."""
    if resolve_data_dir(data_dir) is None:
        from w2s_ray.tasks.hub import require_hub

        require_hub()


def load_task(name: str, data_dir: str | None = None, options: dict[str, Any] | None = None) -> datasets.Dataset:
    """All rows of task `name` (before splitting), from a data dir or the hub.

    Options are checked against the task's allowed options (UserError on unknown names or bad
    values). Results are cached per process by (task, data dir, options); each call returns a
    fresh Dataset object over the same immutable Arrow table.
    """
    task = get_task(name)
    opts = task.resolve_options(options)
    resolved = resolve_data_dir(data_dir)
    if resolved is not None:
        resolved = str(Path(resolved).expanduser().resolve())
    cached = _load_cached(name, resolved, json.dumps(opts, sort_keys=True, default=list))
    return datasets.Dataset(cached.data, info=copy.deepcopy(cached.info))


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, data_dir: str | None, options_json: str) -> datasets.Dataset:
    task = TASKS[name]
    return task.load(data_dir, task.resolve_options(json.loads(options_json)))
