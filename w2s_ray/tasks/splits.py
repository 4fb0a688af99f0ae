"""Deterministic, disjoint A / B / val / test splits of a task's rows.

How (documented because it decides whether results can be trusted):
1. Pool: a task's rows come from all of its files (native train/dev/test pooled). No native
   split is used as such, so native test rows cannot leak into training splits because every
   split, the test split included, is carved from the same deduplicated pool.
2. Deduplicate before carving: classify rows by text (whitespace-stripped); pairwise rows by
   the unordered pair {text_a, text_b}. The first occurrence (in load order) is kept.
3. Pairwise rows that share any text (e.g. QA-Feedback: 4 answers, 6 pairs per question) are
   grouped (connected components), and a group never straddles two splits, so no text appears
   in two splits. If a group does not fit in the rest of a split, the part that does not fit
   is left out of every split.
4. Shuffle groups with `numpy.random.default_rng(seed)` and carve A, B, val, test in order.
   The same seed gives identical splits (and row order); the splits do not depend on anything
   else (not on the Python hash seed or on the machine).
5. Too few rows: UserError naming the task, the distinct rows available and the total asked
   for. Splits are never silently shrunk.
6. `balance=True`: classify splits get exactly n//2 rows of label 0 and n - n//2 of label 1
   (each class is sampled separately; UserError if a class has too few rows). Pairwise splits
   keep their rows and re-orient pairs (swap text_a/text_b and flip the label) so exactly
   n - n//2 rows have label 1; that loses no data and keeps "label 1 = text_a preferred".
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from w2s_ray.config import SplitSizes
from w2s_ray.errors import UserError

SPLIT_NAMES: tuple[str, ...] = ("a", "b", "val", "test")


def make_splits(ds: datasets.Dataset, sizes: SplitSizes, seed: int, balance: bool = False,
                *, name: str | None = None) -> dict[str, datasets.Dataset]:
    """Split a task's rows into {"a", "b", "val", "test"} (see the module docstring)."""
    name = name or ds.info.dataset_name or "dataset"
    wanted = _check_sizes(sizes)
    pairwise = "text_a" in ds.column_names
    groups = _groups(ds, pairwise)
    available = sum(len(g) for g in groups)
    total = sum(wanted.values())
    asked = ", ".join(f"{k}={v}" for k, v in wanted.items())
    if total > available:
        raise UserError(
            f"task {name!r} has {available} distinct rows but the splits ask for {total} ({asked}); lower the sizes"
        )
    rng = np.random.default_rng(seed)
    if balance and not pairwise:
        indices = _carve_balanced(np.asarray(column(ds, "label")), [g[0] for g in groups], wanted, rng, name)
    else:
        indices = _carve(groups, wanted, rng, name, asked)
    splits = {k: ds.select(idx) for k, idx in indices.items()}
    if balance and pairwise:
        splits = {k: _orient_balanced(v, rng) for k, v in splits.items()}
    return splits


def column(ds: datasets.Dataset, name: str) -> list[Any]:
    """A column as a Python list, read through Arrow (`ds[name]` decodes row by row: slow)."""
    return ds.with_format("arrow")[name].to_pylist()


def _check_sizes(sizes: SplitSizes) -> dict[str, int]:
    wanted = {k: getattr(sizes, k) for k in SPLIT_NAMES}
    for k, v in wanted.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise UserError(f"split size {k}={v!r} is invalid; expected a non-negative integer")
    return {k: int(v) for k, v in wanted.items()}


def _groups(ds: datasets.Dataset, pairwise: bool) -> list[list[int]]:
    """Row indices grouped so that no text is shared between groups; duplicates removed."""
    if not pairwise:
        first: dict[str, int] = {}
        for i, t in enumerate(column(ds, "text")):
            first.setdefault(t.strip(), i)
        return [[i] for i in sorted(first.values())]
    keep: dict[tuple[str, str], int] = {}
    for i, (a, b) in enumerate(zip(column(ds, "text_a"), column(ds, "text_b"))):
        keep.setdefault(tuple(sorted((a.strip(), b.strip()))), i)  # type: ignore[arg-type]
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in keep:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[int]] = {}
    for (a, _), i in sorted(keep.items(), key=lambda kv: kv[1]):
        groups.setdefault(find(a), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def _carve(groups: list[list[int]], wanted: dict[str, int], rng: np.random.Generator,
           name: str, asked: str) -> dict[str, list[int]]:
    order = rng.permutation(len(groups))
    out: dict[str, list[int]] = {}
    pos = 0
    for split, n in wanted.items():
        rows: list[int] = []
        while len(rows) < n:
            if pos == len(order):
                raise UserError(
                    f"task {name!r}: not enough rows for the splits ({asked}) once rows sharing a text "
                    "are kept in one split; lower the sizes"
                )
            rows.extend(groups[order[pos]][: n - len(rows)])
            pos += 1
        out[split] = rows
    return out


def _carve_balanced(labels: np.ndarray, rows: list[int], wanted: dict[str, int],
                    rng: np.random.Generator, name: str) -> dict[str, list[int]]:
    rows_arr = np.asarray(rows, dtype=np.int64)
    classes = sorted(set(labels[rows_arr].tolist()))
    if len(classes) != 2:
        raise UserError(f"task {name!r}: balance=True needs exactly 2 classes, found {classes}")
    need = {c: sum(n // 2 if c == classes[0] else n - n // 2 for n in wanted.values()) for c in classes}
    pools = {}
    for c in classes:
        pool = rows_arr[labels[rows_arr] == c]
        if len(pool) < need[c]:
            raise UserError(
                f"task {name!r}: balance=True needs {need[c]} distinct rows with label {c} but only {len(pool)} exist; "
                "lower the sizes or drop balancing"
            )
        pools[c] = rng.permutation(pool).tolist()
    out: dict[str, list[int]] = {}
    pos = {c: 0 for c in classes}
    for split, n in wanted.items():
        take: list[int] = []
        for c, k in ((classes[0], n // 2), (classes[1], n - n // 2)):
            take += pools[c][pos[c]: pos[c] + k]
            pos[c] += k
        out[split] = rng.permutation(np.asarray(take, dtype=np.int64)).tolist()
    return out


def _orient_balanced(split: datasets.Dataset, rng: np.random.Generator) -> datasets.Dataset:
    n = len(split)
    target = rng.permutation(np.r_[np.zeros(n // 2, dtype=np.int64), np.ones(n - n // 2, dtype=np.int64)])
    cols: dict[str, list[Any]] = split.to_dict()
    for i, want in enumerate(target.tolist()):
        if cols["label"][i] != want:
            cols["text_a"][i], cols["text_b"][i] = cols["text_b"][i], cols["text_a"][i]
            cols["label"][i] = want
    return datasets.Dataset.from_dict(cols, features=split.features, info=split.info)
