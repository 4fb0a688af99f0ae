"""The core runs without Tune: nothing below the search imports Ray Tune or ``w2s_ray.search``.

Training, the pipeline, analysis, tasks, models, activations, losses and weak-label methods get
what the search adds (the Tune callback, the per-epoch objective) passed in from ``search/``.
Imports are read from the source (inside functions too), so a lazy import counts as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "w2s_ray"
CORE = ["train", "pipeline", "analysis", "tasks", "models", "activations", "losses.py", "weak_labels.py"]
FORBIDDEN = ("ray.tune", "w2s_ray.search")


def _modules() -> list[Path]:
    found: list[Path] = []
    for name in CORE:
        path = PACKAGE / name
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def imported_modules(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Every module ``path`` imports, with ``from a import b`` counted as ``a`` and ``a.b``.

    Relative imports are resolved against ``path``'s package, named from ``root``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = list(path.relative_to(root).parts[:-1])
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _forbidden(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN)


def test_the_core_modules_are_all_found():
    modules = _modules()
    assert all(path.exists() for path in modules)
    assert {p.relative_to(PACKAGE).parts[0] for p in modules} == set(CORE)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_neither_tune_nor_the_search(path: Path):
    bad = sorted(name for name in imported_modules(path) if _forbidden(name))
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}: pass it in from w2s_ray/search/ instead"


def test_the_import_reader_sees_lazy_and_aliased_imports(tmp_path: Path):
    module = tmp_path / "w2s_ray" / "train" / "example.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from ray import tune\n    import w2s_ray.search.objective as o\n"
                      "    from ..search import trainable\n")
    names = imported_modules(module, root=tmp_path)
    assert {"ray.tune", "w2s_ray.search.objective", "w2s_ray.search.trainable"} <= names
    assert all(_forbidden(n) for n in ("ray.tune", "ray.tune.integration", "w2s_ray.search"))
    assert not any(_forbidden(n) for n in ("ray.train", "ray.tuner", "w2s_ray.searchable"))

