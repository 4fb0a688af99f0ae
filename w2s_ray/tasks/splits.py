"""Deterministic, disjoint, class-balanced A / B / val / test splits of a task's rows.

How (documented because it decides whether results can be trusted):
1. Pool: a task's rows come from all of its files (native train/dev/test pooled). No native
   split is used as such, so native test rows cannot leak into training splits because every
   split, the test split included, is carved from the same deduplicated pool.
2. Deduplicate before carving: classify rows by text (whitespace-stripped); pairwise rows by
   the unordered pair {text_a, text_b}. The first occurrence (in load order) is kept.
3. Group: rows that share a text (pairwise: any of text_a/text_b, e.g. QA-Feedback's 4 answers
   in 6 pairs per question) or a key of their `group` column (the question, passage or context
   a task says they share; see `base.py`) form one group (connected components, duplicates
   included), and a group never straddles two splits, so no text, question, passage or context
   appears in two splits. Part of a group may be left out of every split (when the rest does
   not fit, or to keep the classes balanced); it is never put in another split.
4. Shuffle groups with `numpy.random.default_rng(seed)` and carve A, B, val, test. The same
   seed gives identical splits (and row order); the splits do not depend on anything else (not
   on the Python hash seed or on the machine).
5. Balanced by default (`balance=True`; `--no-balance` turns it off): a classify split of n
   rows has exactly n//2 of label 0 and n - n//2 of label 1. Whole groups go, in shuffled
   order, to the first split they fit (per class); then the splits are topped up from the
   remaining groups, each giving the rows of the classes still needed to one split. Pairwise
   splits keep their rows and re-orient pairs (swap text_a/text_b and flip the label) so
   exactly n - n//2 rows have label 1; that loses no data and keeps "label 1 = text_a
   preferred". Unbalanced (`balance=False`): groups fill A, then B, val and test in order.
6. Too few rows: a one-line UserError naming the task and the largest sizes (the asked sizes
   scaled down alike) that fit, e.g. "... lower the sizes: at most a=290, b=290, val=145,
   test=241 fit with balanced classes". Splits are never silently shrunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import numpy as np

from w2s_ray.config import SplitSizes
from w2s_ray.errors import UserError
from w2s_ray.tasks.base import GROUP, GROUP_SEP

SPLIT_NAMES: tuple[str, ...] = ("a", "b", "val", "test")

Sizes = dict[str, int]
Carve = Callable[[Sizes], "dict[str, list[int]] | None"]


def make_splits(ds: datasets.Dataset, sizes: SplitSizes, seed: int, balance: bool = True,
                *, name: str | None = None) -> dict[str, datasets.Dataset]:
    """Split a task's rows into {"a", "b", "val", "test"} (see the module docstring)."""
    name = name or ds.info.dataset_name or "dataset"
    wanted = _check_sizes(sizes)
    pairwise = "text_a" in ds.column_names
    groups = row_groups(ds)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups)).tolist()
    shuffled = [groups[i] for i in order]
    balanced = balance and not pairwise
    labels = column(ds, "label")
    if balanced and set(labels) - {0, 1}:
        raise UserError(f"task {name!r}: balanced splits need labels 0/1, found {sorted(set(labels))}")

    def carve(w: Sizes) -> dict[str, list[int]] | None:
        return _carve_balanced(shuffled, labels, w) if balanced else _carve(shuffled, w)

    indices = carve(wanted)
    if indices is None:
        raise UserError(_too_few(name, ds, groups, wanted, carve, balanced))
    splits = {k: ds.select(rng.permutation(np.asarray(idx, dtype=np.int64)).tolist()) for k, idx in indices.items()}
    if balance and pairwise:
        splits = {k: _orient_balanced(v, rng) for k, v in splits.items()}
    return splits


def column(ds: datasets.Dataset, name: str) -> list[Any]:
    """A column as a Python list, read through Arrow (`ds[name]` decodes row by row: slow)."""
    return ds.with_format("arrow")[name].to_pylist()


def row_groups(ds: datasets.Dataset) -> list[list[int]]:
    """Indices of the distinct rows, grouped so that no text or group key is shared between groups.

    Groups are sorted by their first row; rows within a group are in load order.
    """
    dedup, keys = _row_keys(ds)
    parent: dict[str, str] = {}
    first: dict[Any, int] = {}
    for i, (d, ks) in enumerate(zip(dedup, keys)):
        first.setdefault(d, i)
        for k in ks[1:]:
            _union(parent, ks[0], k)
    groups: dict[str, list[int]] = {}
    for i in sorted(first.values()):
        groups.setdefault(_find(parent, keys[i][0]), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def _row_keys(ds: datasets.Dataset) -> tuple[list[Any], list[list[str]]]:
    """Per row: its dedup key, and the keys (texts, group keys) that link it to other rows."""
    if "text_a" in ds.column_names:
        pairs = [(a.strip(), b.strip()) for a, b in zip(column(ds, "text_a"), column(ds, "text_b"))]
        dedup: list[Any] = [tuple(sorted(p)) for p in pairs]
        keys = [[f"t:{a}", f"t:{b}"] for a, b in pairs]
    else:
        dedup = [t.strip() for t in column(ds, "text")]
        keys = [[f"t:{t}"] for t in dedup]
    if GROUP in ds.column_names:
        for ks, g in zip(keys, column(ds, GROUP)):
            ks.extend(f"g:{k}" for k in (g or "").split(GROUP_SEP) if k)
    return dedup, keys


def _find(parent: dict[str, str], x: str) -> str:
    parent.setdefault(x, x)
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def _union(parent: dict[str, str], a: str, b: str) -> None:
    ra, rb = _find(parent, a), _find(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)


def _check_sizes(sizes: SplitSizes) -> Sizes:
    wanted = {k: getattr(sizes, k) for k in SPLIT_NAMES}
    for k, v in wanted.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise UserError(f"split size {k}={v!r} is invalid; expected a non-negative integer")
    return {k: int(v) for k, v in wanted.items()}


def _carve(groups: list[list[int]], wanted: Sizes) -> dict[str, list[int]] | None:
    """Fill the splits in order from the (shuffled) groups; None if they run out."""
    out: dict[str, list[int]] = {}
    pos = 0
    for split, n in wanted.items():
        rows: list[int] = []
        while len(rows) < n:
            if pos == len(groups):
                return None
            rows.extend(groups[pos][: n - len(rows)])
            pos += 1
        out[split] = rows
    return out


def _carve_balanced(groups: list[list[int]], labels: list[int], wanted: Sizes) -> dict[str, list[int]] | None:
    """n//2 rows of label 0 and n - n//2 of label 1 per split from the (shuffled) groups; None if impossible."""
    need = {k: [n // 2, n - n // 2] for k, n in wanted.items()}
    out: dict[str, list[int]] = {k: [] for k in wanted}
    rest = []
    for g in groups:  # pass 1: whole groups, first split where both class counts fit
        counts = [sum(1 for i in g if labels[i] == c) for c in (0, 1)]
        split = next((k for k, (n0, n1) in need.items() if counts[0] <= n0 and counts[1] <= n1), None)
        if split is None:
            rest.append(g)
            continue
        out[split] += g
        need[split] = [need[split][0] - counts[0], need[split][1] - counts[1]]
    for g in rest:  # pass 2: part of a group to one split; the rest of it is left out
        split = next((k for k, n in need.items() if any(n[labels[i]] for i in g)), None)
        if split is None:
            continue
        for i in g:
            if need[split][labels[i]]:
                out[split].append(i)
                need[split][labels[i]] -= 1
    return out if all(n == [0, 0] for n in need.values()) else None


def _largest_fit(carve: Carve, wanted: Sizes) -> Sizes:
    """The asked sizes scaled down alike (largest scale found by bisection) that `carve` can fill."""
    total = sum(wanted.values())

    def scaled(m: int) -> Sizes:
        return {k: v * m // total for k, v in wanted.items()} if total else dict(wanted)

    lo, hi = 0, total  # scaled(lo) fits (nothing asked); scaled(total) = wanted does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if carve(scaled(mid)) is not None else (lo, mid)
    return scaled(lo)


def _too_few(name: str, ds: datasets.Dataset, groups: list[list[int]], wanted: Sizes, carve: Carve,
             balanced: bool) -> str:
    """The one-line message for splits that cannot be filled."""
    asked = ", ".join(f"{k}={v}" for k, v in wanted.items())
    available = sum(len(g) for g in groups)
    total = sum(wanted.values())
    if total > available:
        why = f"task {name!r} has {available} distinct rows but the splits ask for {total} ({asked})"
    elif balanced:
        labels = column(ds, "label")
        have = [sum(1 for g in groups for i in g if labels[i] == c) for c in (0, 1)]
        why = (f"task {name!r} cannot fill the splits ({asked}) with balanced classes from its "
               f"{have[0]} distinct rows of label 0 and {have[1]} of label 1 (rows sharing a text, question, "
               "passage or context stay in one split)")
    else:
        why = (f"task {name!r}: not enough rows for the splits ({asked}) once rows sharing a text, question, "
               "passage or context are kept in one split")
    fit = ", ".join(f"{k}={v}" for k, v in _largest_fit(carve, wanted).items())
    tail = " with balanced classes (or pass --no-balance)" if balanced else ""
    return f"{why}; lower the sizes: at most {fit} fit{tail}"


def _orient_balanced(split: datasets.Dataset, rng: np.random.Generator) -> datasets.Dataset:
    n = len(split)
    target = rng.permutation(np.r_[np.zeros(n // 2, dtype=np.int64), np.ones(n - n // 2, dtype=np.int64)])
    cols: dict[str, list[Any]] = split.to_dict()
    for i, want in enumerate(target.tolist()):
        if cols["label"][i] != want:
            cols["text_a"][i], cols["text_b"][i] = cols["text_b"][i], cols["text_a"][i]
            cols["label"][i] = want
    return datasets.Dataset.from_dict(cols, features=split.features, info=split.info)
