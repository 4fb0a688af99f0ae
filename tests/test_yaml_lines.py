"""The line-numbered YAML loader shared by search-space files and task files."""

from __future__ import annotations

from pathlib import Path

import pytest

from w2s_ray.errors import UserError
from w2s_ray.tasks.user import read_task_yaml
from w2s_ray.yaml_lines import LMap, Loc, LSeq, parse_yaml, read_yaml


def test_parser_records_file_and_line_of_every_key_and_item():
    doc = parse_yaml("a: 1\nb:\n  - x\n  - {c: 2}\n", "f.yaml")
    assert isinstance(doc, LMap) and doc.key_locs == {"a": Loc("f.yaml", 1), "b": Loc("f.yaml", 2)}
    seq = doc["b"]
    assert isinstance(seq, LSeq) and seq.locs == [Loc("f.yaml", 3), Loc("f.yaml", 4)]
    assert seq[1].key_locs["c"] == Loc("f.yaml", 4) and str(seq[1].key_locs["c"]) == "f.yaml:4"


def test_line_of_falls_back_to_the_mapping_line():
    doc = parse_yaml("top:\n  a: 1\n  b: 2\n", "f.yaml")["top"]
    assert (doc.line_of("b"), doc.line_of("missing")) == (3, 2)


def test_parser_reads_exponent_without_dot_as_float():
    assert parse_yaml("x: 1e-5\ny: '1e-5'\n", "f") == {"x": 1e-5, "y": "1e-5"}


def test_parser_can_keep_exponent_without_dot_as_text():
    assert parse_yaml("x: 1e-5\ny: 1.0e-5\n", "f", exponent_floats=False) == {"x": "1e-5", "y": 1e-5}
    assert parse_yaml("x: 1e-5\n", "f") == {"x": 1e-5}  # the other loader is left as it was


@pytest.mark.parametrize("text,fragment", [
    ("a: 1\na: 2\n", "f.yaml:2: a: duplicate key (first on line 1)"),
    ("1: a\n", "f.yaml:1: mapping key 1 must be a string"),
    ("a: [\n", "f.yaml:2: invalid YAML"),
    ("a: !!python/name:os.system\n", "f.yaml:1: invalid YAML"),
])
def test_parser_faults_are_one_located_line(text, fragment):
    with pytest.raises(UserError) as info:
        parse_yaml(text, "f.yaml")
    assert str(info.value).startswith(fragment) and "\n" not in str(info.value)


def test_unreadable_file_names_what_it_is(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match=r"^cannot read task file .*bad\.yaml: "):
        read_yaml(path, str(path), "task file")


@pytest.mark.parametrize("text,got", [("- a\n- b\n", "list"), ("", "NoneType"), ("3\n", "int")])
def test_task_yaml_must_be_a_mapping(tmp_path: Path, text: str, got: str):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=rf"t\.yaml:1: a task file must be a YAML mapping of keys, got {got}$"):
        read_task_yaml(path)


def test_task_yaml_keeps_exponent_without_dot_as_text(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text("label: {column: c, positive: [1e5]}\n")
    assert read_task_yaml(path)["label"]["positive"] == ["1e5"]
