"""The task registry and the loading entry points.

Adding a task is a YAML file in `w2s_ray/tasks/yaml/` (see `spec.py`) or, where formatting
needs code, one line: decorate its class with `@register` (the class is instantiated once).
`get_task` also takes a path to your own task YAML or data file (see `user.py`), which it
registers under the task's name.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import datasets

from w2s_ray.errors import UserError, unknown_name
from w2s_ray.tasks.base import Task

DATA_DIR_ENV = "W2S_DATA_DIR"

TASKS: dict[str, Task] = {}

T = TypeVar("T", bound=type[Task])


def register(cls: T) -> T:
    """Class decorator: add one instance of a Task subclass to `TASKS` under its `name`."""
    add_task(cls())
    return cls


def add_task(task: Task) -> None:
    """Add a shipped task to `TASKS` (ValueError if its name is taken: a bug, not bad input)."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    TASKS[task.name] = task


def _is_user(task: Task) -> bool:
    return bool(getattr(task, "user", False))


def add_user_task(task: Task, source: str) -> None:
    """Register your own task (from `source`), replacing an earlier one of yours with its name.

    UserError if a shipped task has the name. Replacing clears the per-process load cache.
    """
    old = TASKS.get(task.name)
    if old is task:
        return
    if old is not None and not _is_user(old):
        raise UserError(f"task {source} is named {task.name!r}, the name of a shipped task; "
                        "give it another `name:` (or rename the file)")
    TASKS[task.name] = task
    _load_cached.cache_clear()


def get_task(name: str) -> Task:
    """The task `name`: a registered name, or a path to a task YAML or data file (registered here).

    UserError listing the available tasks for an unknown name.
    """
    from w2s_ray.tasks.user import is_task_path, load_task_file

    if name in TASKS and not is_task_path(name):
        return TASKS[name]
    if is_task_path(name):
        task = load_task_file(name)
        add_user_task(task, name)
        return task
    raise unknown_name("task", name, TASKS)


def needs_data_source(name: str) -> bool:
    """False for a task that reads only your own files (it needs no data dir and no hub)."""
    return not getattr(get_task(name), "local_only", False)


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


def check_data_source(data_dir: str | None, task: str | None = None) -> None:
    """With no data dir (argument or `W2S_DATA_DIR`), the hub must be usable: UserError otherwise.

    Not checked for a `task` that reads only your own files.
    """
    if task is not None and not needs_data_source(task):
        return
    if resolve_data_dir(data_dir) is None:
        from w2s_ray.tasks.hub import require_hub

        require_hub()


def load_task(name: str, data_dir: str | None = None, options: dict[str, Any] | None = None) -> datasets.Dataset:
    """All rows of task `name` (before splitting), from a data dir or the hub (or your own files).

    Options are checked against the task's allowed options (UserError on unknown names or bad
    values). Results are cached per process by (task, data dir, options); each call returns a
    fresh Dataset object over the same immutable Arrow table.
    """
    task = get_task(name)
    opts = task.resolve_options(options)
    resolved = resolve_data_dir(data_dir)
    if resolved is not None:
        resolved = str(Path(resolved).expanduser().resolve())
    cached = _load_cached(task.name, resolved, json.dumps(opts, sort_keys=True, default=list))
    return datasets.Dataset(cached.data, info=copy.deepcopy(cached.info))


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, data_dir: str | None, options_json: str) -> datasets.Dataset:
    task = TASKS[name]
    return task.load(data_dir, task.resolve_options(json.loads(options_json)))
