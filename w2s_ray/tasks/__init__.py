"""Tasks: a registry of datasets in weak-to-strong binary form, and deterministic splits.

    ds = load_task("sst2", data_dir="../shared/data")          # all rows: id, text, label
    splits = make_splits(ds, SplitSizes(a=1000, b=1000, val=500, test=1000), seed=0)

A task loads from a local data dir laid out like `../shared/data` (arg, else env
`W2S_DATA_DIR`) or, with neither, from its Hugging Face dataset.
"""

from w2s_ray.tasks import registry
from w2s_ray.tasks.base import COLUMNS, RecordTask, Task, TaskKind
from w2s_ray.tasks.registry import (
    DATA_DIR_ENV,
    TASKS,
    get_task,
    load_task,
    ood_tasks,
    register,
    resolve_data_dir,
)

# The shipped YAML tasks, then the code tasks (importing a module registers them; order = registry order).
from w2s_ray.tasks.user import shipped_tasks

for _task in shipped_tasks():
    registry.add_task(_task)
from w2s_ray.tasks import nlp, rm, chess  # noqa: E402,F401  isort: skip
from w2s_ray.tasks.splits import SPLIT_NAMES, make_splits  # noqa: E402

__all__ = [
    "COLUMNS",
    "DATA_DIR_ENV",
    "SPLIT_NAMES",
    "TASKS",
    "RecordTask",
    "Task",
    "TaskKind",
    "get_task",
    "load_task",
    "make_splits",
    "ood_tasks",
    "register",
    "resolve_data_dir",
]
