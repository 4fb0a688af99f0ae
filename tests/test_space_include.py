"""``include:`` in search-space files: lookup, override semantics, cycles, error locations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from w2s_ray.errors import UserError
from w2s_ray.search.space import load_space

BASE = textwrap.dedent(
    """\
    weak: m@L1
    strong: m
    ladder: [m@L2]
    params:
      lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
      loss: {type: categorical, choices: [xent, logconf, product]}
      aux_coef: {type: float, low: 0.1, high: 1.0, when: {loss: logconf}}
      alpha: {type: float, low: 0.5, high: 2.0, when: {loss: product}}
      epochs: {type: int, low: 1, high: 3}
    baseline:
      - {loss: xent}
      - {loss: logconf, aux_coef: 0.5}
    """
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(path: Path):
    return load_space(path, "classify")


def test_child_sets_only_task(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    space = load(write(tmp_path, "child.yaml", "include: base.yaml\ntask: sst2\n"))
    plain = load(write(tmp_path, "plain.yaml", "task: sst2\n" + BASE))
    assert space.task == "sst2" and space.params == _unlined(plain.params, space.params)
    assert (space.weak, space.strong, space.ladder, space.baseline) == (plain.weak, plain.strong, plain.ladder,
                                                                        plain.baseline)
    assert space.path == tmp_path / "child.yaml"
    assert space.files == (tmp_path / "child.yaml", tmp_path / "base.yaml")
    assert "include: base.yaml" in space.source_text() and "aux_coef" in space.source_text()


def _unlined(expected, got):
    """``expected`` with the lines of ``got`` (lines differ between files, nothing else may)."""
    import dataclasses

    return {k: dataclasses.replace(v, line=got[k].line) for k, v in expected.items()}


def test_params_merge_per_parameter(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    space = load(write(tmp_path, "child.yaml", """\
        include: base.yaml
        params:
          lr: {fixed: 1.0e-4}
          alpha: null
          batch_size: {type: categorical, choices: [16, 32]}
          loss: {type: categorical, choices: [xent, logconf]}
        """))
    # replaced in place, removed, appended; loss (the selector) is ordered first as always
    assert list(space.params) == ["loss", "lr", "aux_coef", "epochs", "batch_size"]
    assert space.params["lr"].type == "fixed" and space.params["lr"].value == 1e-4
    assert space.params["epochs"].high == 3  # untouched base parameter
    assert len(space.baseline) == 2  # inherited


def test_overriding_param_replaces_its_definition_whole(tmp_path):
    write(tmp_path, "base.yaml", BASE.replace("high: 3}", "high: 3, default: 3}"))
    space = load(write(tmp_path, "child.yaml", "include: base.yaml\nparams:\n  epochs: {type: int, low: 1, high: 5}\n"))
    assert space.params["epochs"].high == 5 and not space.params["epochs"].explicit_default


def test_top_level_keys_and_baseline_replace(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    space = load(write(tmp_path, "child.yaml", """\
        include: base.yaml
        weak: m@L2
        ladder: []
        baseline:
          - {loss: product}
        """))
    assert space.weak == "m@L2" and space.ladder == () and space.strong == "m"
    assert space.baseline == [{"loss": "product"}]


def test_chain_of_includes_and_nearest_wins(tmp_path):
    write(tmp_path, "a.yaml", BASE)
    write(tmp_path, "b.yaml", "include: a.yaml\ntask: imdb\nparams:\n  epochs: {fixed: 2}\n")
    space = load(write(tmp_path, "c.yaml", "include: b\ntask: sst2\n"))  # suffix optional
    assert space.task == "sst2" and space.params["epochs"].value == 2
    assert [p.name for p in space.files] == ["c.yaml", "b.yaml", "a.yaml"]


def test_include_relative_to_the_including_file(tmp_path):
    write(tmp_path, "bases/base.yaml", BASE)
    write(tmp_path, "spaces/mine.yaml", "include: ../bases/base.yaml\n")
    assert load(tmp_path / "spaces" / "mine.yaml").weak == "m@L1"


def test_bare_name_found_in_search_spaces(tmp_path):
    """A file outside search_spaces/ can build on a shipped default by its bare name."""
    space = load_space(write(tmp_path, "mine.yaml", "include: default_classify.yaml\ntask: imdb\n"), "classify")
    shipped = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "imdb.yaml", "classify")
    assert space.params == shipped.params and space.baseline == shipped.baseline


def assert_error(path: Path, where: str, *fragments: str) -> str:
    with pytest.raises(UserError) as info:
        load(path)
    msg = str(info.value)
    assert "\n" not in msg and where in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def test_missing_include(tmp_path):
    path = write(tmp_path, "child.yaml", "task: sst2\ninclude: nope.yaml\n")
    assert_error(path, "child.yaml:2: include: 'nope.yaml' not found", "looked for")


def test_include_not_a_string(tmp_path):
    assert_error(write(tmp_path, "child.yaml", "include: [a.yaml]\n"), "child.yaml:1: include:", "must be a file name")


def test_include_cycle(tmp_path):
    write(tmp_path, "a.yaml", "include: b.yaml\n")
    write(tmp_path, "b.yaml", "task: sst2\ninclude: a.yaml\n")
    msg = assert_error(tmp_path / "a.yaml", "b.yaml:2: include:", "include cycle")
    assert "a.yaml -> " in msg and "b.yaml -> " in msg


def test_self_include_is_a_cycle(tmp_path):
    assert_error(write(tmp_path, "a.yaml", "include: a.yaml\n"), "a.yaml:1: include:", "include cycle")


def test_error_points_into_the_base_file(tmp_path):
    """The base's aux_coef is conditioned on logconf; the child's loss choices make that impossible."""
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml",
                  "include: base.yaml\nparams:\n  loss: {type: categorical, choices: [xent, product]}\n")
    aux_line = BASE.splitlines().index(next(ln for ln in BASE.splitlines() if "aux_coef" in ln)) + 1
    assert_error(child, f"base.yaml:{aux_line}: params.aux_coef.when.loss", "'logconf' is not one of the choices")


def test_error_points_into_the_child_file(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "include: base.yaml\nparams:\n  epochs: {type: int, low: 3, high: 1}\n")
    assert_error(child, "child.yaml:3: params.epochs", "low (3) > high (1)")


def test_baseline_error_points_into_the_base(tmp_path):
    """Removing a parameter the inherited baseline sets: the baseline line is in the base."""
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "include: base.yaml\nparams:\n  aux_coef: null\n")
    assert_error(child, f"base.yaml:{len(BASE.splitlines())}: baseline[1].aux_coef", "unknown parameter")


def test_null_for_a_parameter_the_base_lacks(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "include: base.yaml\nparams:\n  lora_r: null\n")
    assert_error(child, "child.yaml:3: params.lora_r:", "none is named 'lora_r'")


def test_empty_base(tmp_path):
    write(tmp_path, "base.yaml", "# nothing\n")
    child = write(tmp_path, "child.yaml", "include: base.yaml\n")
    assert_error(child, "base.yaml:1:", "included search space is empty")


def test_bad_yaml_in_base_names_the_base(tmp_path):
    write(tmp_path, "base.yaml", "params:\n  epochs: type: int\n")
    assert_error(write(tmp_path, "child.yaml", "include: base.yaml\n"), "base.yaml:2: invalid YAML")
