"""``--list-tasks`` on both command lines: every registered task with its kind and description, exit 0."""

import pytest

from w2s_ray import run
from w2s_ray.search import cli
from w2s_ray.tasks import TASKS


@pytest.mark.parametrize("build", [run.build_parser, cli.build_parser], ids=["run", "search"])
def test_list_tasks_prints_every_task_and_exits_0(build, capsys):
    with pytest.raises(SystemExit) as info:
        build().parse_args(["--list-tasks"])  # without the otherwise required --task
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(TASKS)
    for name, task in TASKS.items():
        line = next(ln for ln in lines if ln.split()[0] == name)
        assert task.kind in line and task.description in line
