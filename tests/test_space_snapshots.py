"""Every shipped search space resolves to the space recorded in ``tests/data/search_space_snapshots.json``.

The snapshot was written by the loader before ``include:`` existed, from the then fully
spelled-out files, so this proves the deduplicated files (and the split loader) mean exactly
what they meant. After changing a shipped space on purpose, regenerate it with
``python -m tests.test_space_snapshots`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from w2s_ray.search.space import SearchSpace, load_space

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "tests" / "data" / "search_space_snapshots.json"
FILES = sorted((REPO / "search_spaces").glob("*.yaml"))


def kind_of(path: Path) -> str:
    return "pairwise" if path.stem == "rm" or path.stem.endswith("_pairwise") else "classify"


def canonical(space: SearchSpace) -> dict[str, Any]:
    """What a space means, as JSON: params in order (without their line), baseline, models, points."""
    params = []
    for spec in space.params.values():
        d = dataclasses.asdict(spec)
        d.pop("line")
        d["choices"] = list(d["choices"])
        d["when"] = {k: list(v) for k, v in d["when"].items()}
        params.append(d)
    return {"kind": space.kind, "task": space.task, "weak": space.weak, "strong": space.strong,
            "ladder": list(space.ladder), "params": params, "baseline": space.baseline,
            "points_to_evaluate": space.points_to_evaluate()}


def resolved(path: Path) -> dict[str, Any]:
    # A JSON round trip, so tuples/lists compare alike; int vs float survives it.
    return json.loads(json.dumps(canonical(load_space(path, kind_of(path)))))


def test_snapshot_covers_every_shipped_file():
    assert set(json.loads(SNAPSHOT.read_text())) == {p.name for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_shipped_space_unchanged(path: Path):
    expected = json.loads(SNAPSHOT.read_text())[path.name]
    got = resolved(path)
    assert [p["name"] for p in got["params"]] == [p["name"] for p in expected["params"]]  # order too
    assert got == expected
    for a, b in zip(got["params"], expected["params"]):  # int/float kept apart (1 == 1.0 in Python)
        assert {k: type(v) for k, v in a.items()} == {k: type(v) for k, v in b.items()}, a["name"]


if __name__ == "__main__":
    out = {p.name: resolved(p) for p in FILES}
    SNAPSHOT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} ({len(out)} files)", file=sys.stderr)
