"""The search's typed settings: one field per command-line option, frozen, and the plan's resolved values."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from tests.search_plan import tiny_plan
from w2s_ray.search.cli import build_parser, parse_settings
from w2s_ray.search.settings import SearchSettings


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    """Destinations that reach the namespace (``--help`` and ``--list-tasks`` exit instead)."""
    return {a.dest for a in parser._actions if a.default is not argparse.SUPPRESS and a.dest != argparse.SUPPRESS}


def test_every_option_is_a_settings_field_and_back() -> None:
    assert _dests(build_parser()) == {f.name for f in dataclasses.fields(SearchSettings)}


def test_a_new_option_without_a_field_fails_at_once() -> None:
    parser = build_parser()
    parser.add_argument("--brand-new-knob", type=int, default=1)
    with pytest.raises(TypeError, match="brand_new_knob"):
        SearchSettings.from_namespace(parser.parse_args(["--task", "sst2"]))


def test_settings_are_frozen_and_typed_from_the_command_line() -> None:
    settings = parse_settings(["--task", "sst2", "--task-option", "a=1", "--task-option", "b=x",
                               "--cpus-per-worker", "1.5", "--seed", "7"])
    assert settings.task_option == ("a=1", "b=x") and settings.cpus_per_worker == 1.5 and settings.seed == 7
    assert parse_settings(["--task", "sst2"]).task_option == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 8  # type: ignore[misc]


def test_the_plan_resolves_what_the_settings_leave_open(tmp_path: Path, data_dir: str) -> None:
    plan = tiny_plan(tmp_path, data_dir)
    assert plan.settings.max_concurrent is None and plan.settings.confirm_seeds is None
    assert plan.max_concurrent == plan.preset.max_concurrent and plan.confirm_seeds == plan.preset.confirm_seeds
    assert plan.use_gpu is False
    (tmp_path / "given").mkdir()
    given = tiny_plan(tmp_path / "given", data_dir, "--max-concurrent", "3", "--confirm-seeds", "2")
    assert (given.max_concurrent, given.confirm_seeds) == (3, 2)
    assert (given.settings.max_concurrent, given.settings.confirm_seeds) == (3, 2)
