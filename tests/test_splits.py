"""make_splits: determinism, disjointness, dedup before carving, grouping, balancing, size errors."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

from w2s_ray.config import SplitSizes
from w2s_ray.errors import UserError
from w2s_ray.tasks import SPLIT_NAMES, make_splits
from w2s_ray.tasks.base import FEATURES, GROUP_SEP, features
from w2s_ray.tasks.splits import row_groups

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("W2S_DATA_DIR") or REPO.parent / "shared" / "data")
SIZES = SplitSizes(a=30, b=30, val=20, test=20)


def classify_ds(n: int = 300, dup_every: int = 7, pos_frac: float = 0.5) -> datasets.Dataset:
    """n distinct texts plus whitespace-variant duplicates of every `dup_every`-th one."""
    rows = [{"id": f"r{i}", "text": f"text {i}", "label": int(i < n * pos_frac)} for i in range(n)]
    rows += [{"id": f"d{i}", "text": f"  text {i} ", "label": 1 - rows[i]["label"]} for i in range(0, n, dup_every)]
    info = datasets.DatasetInfo(dataset_name="toy", features=FEATURES["classify"])
    return datasets.Dataset.from_list(rows, features=FEATURES["classify"], info=info)


def pairwise_ds(questions: int = 60) -> tuple[datasets.Dataset, dict[str, str]]:
    """QA-Feedback-like: 4 answers per question, all 6 pairs; returns (ds, id -> preferred text)."""
    rows, preferred = [], {}
    for q in range(questions):
        answers = [f"q{q} answer {k}" for k in range(4)]
        for n, (i, j) in enumerate(itertools.combinations(range(4), 2)):
            label = (q + n) % 3 == 0  # deliberately unbalanced (about 1/3 ones)
            a, b = (answers[i], answers[j]) if label else (answers[j], answers[i])
            rid = f"q{q}p{n}"
            rows.append({"id": rid, "text_a": a, "text_b": b, "label": int(label)})
            preferred[rid] = answers[i]
    # an exact duplicate pair in reversed order must be dropped as a duplicate
    rows.append({"id": "dup", "text_a": rows[0]["text_b"], "text_b": rows[0]["text_a"], "label": 1 - rows[0]["label"]})
    info = datasets.DatasetInfo(dataset_name="toy_pairs", features=FEATURES["pairwise"])
    return datasets.Dataset.from_list(rows, features=FEATURES["pairwise"], info=info), preferred


def grouped_ds(rows: list[tuple[str, int, str]]) -> datasets.Dataset:
    """(text, label, group) rows in a dataset with a `group` column."""
    feats = features("classify", grouped=True)
    info = datasets.DatasetInfo(dataset_name="toy_groups", features=feats)
    data = [{"id": f"r{i}", "text": t, "label": y, "group": g} for i, (t, y, g) in enumerate(rows)]
    return datasets.Dataset.from_list(data, features=feats, info=info)


def mc_ds(questions: int = 100, per_passage: int = 3) -> datasets.Dataset:
    """Multiple-choice-like: a correct and a distractor row per question, questions sharing passages."""
    rows = [(f"p{q // per_passage} q{q} {kind}", int(kind == "right"), f"passage {q // per_passage}")
            for q in range(questions) for kind in ("right", "wrong")]
    return grouped_ds(rows)


def split_of(splits: dict[str, datasets.Dataset]) -> dict[str, str]:
    """Row id -> the split it is in."""
    return {i: k for k, s in splits.items() for i in s["id"]}


def fitting_sizes(message: str) -> SplitSizes:
    """The sizes an error message says fit ('... at most a=1, b=2, val=3, test=4 fit ...')."""
    found = dict(re.findall(r"\b(a|b|val|test)=(\d+)", message.split("at most", 1)[1]))
    return SplitSizes(**{k: int(v) for k, v in found.items()})


def texts(split: datasets.Dataset) -> list[str]:
    if "text" in split.column_names:
        return [t.strip() for t in split["text"]]
    return [t.strip() for t in list(split["text_a"]) + list(split["text_b"])]


def test_sizes_keys_and_disjoint_ids():
    splits = make_splits(classify_ds(), SIZES, seed=0)
    assert tuple(splits) == SPLIT_NAMES
    assert {k: len(v) for k, v in splits.items()} == {"a": 30, "b": 30, "val": 20, "test": 20}
    all_ids = [i for s in splits.values() for i in s["id"]]
    assert len(all_ids) == len(set(all_ids))


def test_same_seed_same_splits_different_seed_different_splits():
    ds = classify_ds()
    s1, s2, s3 = (make_splits(ds, SIZES, seed=s) for s in (0, 0, 1))
    for k in SPLIT_NAMES:
        assert list(s1[k]["id"]) == list(s2[k]["id"])  # identical ids in identical order
        assert s1[k].to_dict() == s2[k].to_dict()
    assert any(set(s1[k]["id"]) != set(s3[k]["id"]) for k in SPLIT_NAMES)


def test_duplicates_removed_before_carving():
    ds = classify_ds(n=120, dup_every=2)
    splits = make_splits(ds, SplitSizes(a=30, b=30, val=30, test=30), seed=3)  # uses every distinct text
    seen = [t for s in splits.values() for t in texts(s)]
    assert len(seen) == len(set(seen)) == 120
    # the first occurrence is kept, so no "d..." duplicate row survives
    assert not any(i.startswith("d") for s in splits.values() for i in s["id"])


def test_too_few_rows_names_task_available_and_requested():
    ds = classify_ds(n=50, dup_every=5)  # 50 distinct texts, 60 rows
    with pytest.raises(UserError) as err:
        make_splits(ds, SplitSizes(a=20, b=20, val=10, test=10), seed=0)
    msg = str(err.value)
    assert "'toy'" in msg and "50 distinct rows" in msg and "60" in msg and "\n" not in msg
    assert "lower the sizes: at most a=" in msg
    make_splits(ds, fitting_sizes(msg), seed=0)  # the sizes it names do fit


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_invalid_size_is_user_error(bad):
    with pytest.raises(UserError, match="split size a="):
        make_splits(classify_ds(), SplitSizes(a=bad, b=1, val=1, test=1), seed=0)


def test_balance_gives_exact_class_counts_on_imbalanced_data():
    ds = classify_ds(n=400, pos_frac=0.2)  # 80 positives
    sizes = SplitSizes(a=41, b=40, val=20, test=20)
    splits = make_splits(ds, sizes, seed=0, balance=True)
    for k, split in splits.items():
        n = getattr(sizes, k)
        assert Counter(split["label"]) == Counter({0: n // 2, 1: n - n // 2})
    unbalanced = make_splits(ds, sizes, seed=0, balance=False)
    assert Counter(unbalanced["a"]["label"])[1] < 41 // 2  # mostly negatives without balancing


def test_balanced_is_the_default():
    ds = classify_ds(n=400, pos_frac=0.2)
    sizes = SplitSizes(a=41, b=40, val=20, test=20)
    assert all(make_splits(ds, sizes, seed=4)[k].to_dict() == make_splits(ds, sizes, seed=4, balance=True)[k].to_dict()
               for k in SPLIT_NAMES)


def test_balance_with_too_few_of_a_class_is_one_line_error_with_sizes_that_fit():
    ds = classify_ds(n=400, pos_frac=0.05)  # 20 positives
    sizes = SplitSizes(a=40, b=40, val=10, test=10)
    with pytest.raises(UserError) as err:
        make_splits(ds, sizes, seed=0, balance=True)
    msg = str(err.value)
    assert "\n" not in msg and "'toy'" in msg and "20 of label 1" in msg
    assert msg.endswith("fit with balanced classes (or pass --no-balance)")
    fit = fitting_sizes(msg)
    assert fit == SplitSizes(a=16, b=16, val=4, test=4)  # 8 + 8 + 2 + 2 = all 20 positives
    splits = make_splits(ds, fit, seed=0)
    assert sum(sum(s["label"]) for s in splits.values()) == 20
    make_splits(ds, sizes, seed=0, balance=False)  # fine without balancing


def test_group_column_keeps_rows_sharing_a_key_in_one_split():
    splits = make_splits(mc_ds(), SplitSizes(a=50, b=50, val=30, test=30), seed=1)
    where = split_of(splits)
    ds = mc_ds()
    by_group: dict[str, set[str]] = {}
    for row in ds:
        if row["id"] in where:
            by_group.setdefault(row["group"], set()).add(where[row["id"]])
    assert by_group and all(len(v) == 1 for v in by_group.values())


def test_multi_key_groups_and_duplicate_texts_link_groups():
    # r0-r1 share key x; r1-r2 share key y; r3 duplicates r2's text (dropped) but links group z (r4).
    rows = [("t0", 0, "x"), ("t1", 1, f"x{GROUP_SEP}y"), ("t2", 0, "y"), (" t2 ", 1, "z"), ("t4", 1, "z"),
            ("t5", 0, "w"), ("t6", 1, "v"), ("t7", 0, ""), ("t8", 1, "")]
    ds = grouped_ds(rows)
    assert row_groups(ds) == [[0, 1, 2, 4], [5], [6], [7], [8]]
    for seed in range(10):
        where = split_of(make_splits(ds, SplitSizes(a=1, b=1, val=1, test=1), seed=seed, balance=False))
        assert "r3" not in where
        assert len({where[r] for r in ("r0", "r1", "r2", "r4") if r in where}) <= 1, (seed, where)


def test_question_pairs_balance_exactly_at_odd_sizes_without_leaving_groups_split():
    ds = mc_ds(questions=120)
    sizes = SplitSizes(a=31, b=30, val=21, test=20)
    splits = make_splits(ds, sizes, seed=3)
    for k, split in splits.items():
        n = getattr(sizes, k)
        assert Counter(split["label"]) == Counter({0: n // 2, 1: n - n // 2})
    groups = {k: set(s["group"]) for k, s in splits.items()}
    for x, y in itertools.combinations(SPLIT_NAMES, 2):
        assert not groups[x] & groups[y]
    again = make_splits(ds, sizes, seed=3)
    assert all(again[k].to_dict() == splits[k].to_dict() for k in SPLIT_NAMES)


def test_groups_too_large_to_fill_unbalanced_splits_is_one_line_error():
    ds = mc_ds(questions=60, per_passage=20)  # 3 passages of 40 rows
    with pytest.raises(UserError) as err:
        make_splits(ds, SplitSizes(a=30, b=30, val=30, test=30), seed=0, balance=False)
    msg = str(err.value)
    assert "\n" not in msg and "kept in one split" in msg and "at most" in msg
    make_splits(ds, fitting_sizes(msg), seed=0, balance=False)


def test_pairwise_rows_sharing_a_text_stay_in_one_split():
    ds, _ = pairwise_ds()
    splits = make_splits(ds, SplitSizes(a=100, b=100, val=50, test=50), seed=5)
    assert "dup" not in {i for s in splits.values() for i in s["id"]}
    per_split = {k: set(texts(s)) for k, s in splits.items()}
    for x, y in itertools.combinations(SPLIT_NAMES, 2):
        assert not per_split[x] & per_split[y], (x, y)
    ids = [i for s in splits.values() for i in s["id"]]
    assert len(ids) == len(set(ids)) == 300


def test_pairwise_balance_reorients_without_changing_preferences():
    ds, preferred = pairwise_ds()
    sizes = SplitSizes(a=101, b=100, val=40, test=40)
    splits = make_splits(ds, sizes, seed=2, balance=True)
    for k, split in splits.items():
        n = getattr(sizes, k)
        assert Counter(split["label"]) == Counter({0: n // 2, 1: n - n // 2})
        for row in split:
            shown = row["text_a"] if row["label"] == 1 else row["text_b"]
            assert shown == preferred[row["id"]]
    again = make_splits(ds, sizes, seed=2, balance=True)
    assert all(splits[k].to_dict() == again[k].to_dict() for k in SPLIT_NAMES)


def test_splits_identical_across_processes_and_hash_seeds():
    """Item 7: same seed -> identical load + splits in fresh interpreters with different hash seeds."""
    assert DATA.is_dir(), f"real data dir not found at {DATA} (set W2S_DATA_DIR)"
    code = (
        "from w2s_ray.tasks import load_task, make_splits; from w2s_ray.config import SplitSizes; import hashlib\n"
        "h = hashlib.sha256()\n"
        "for name in ('sciq', 'rm', 'cosmos_qa'):\n"
        f"    ds = load_task(name, {str(DATA)!r})\n"
        "    s = make_splits(ds, SplitSizes(51, 50, 50, 49), seed=7)\n"
        "    for k in ('a', 'b', 'val', 'test'):\n"
        "        h.update(repr(s[k].to_dict()).encode())\n"
        "print(h.hexdigest())\n"
    )
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        outs.append(res.stdout.strip())
    assert outs[0] == outs[1] and len(outs[0]) == 64
