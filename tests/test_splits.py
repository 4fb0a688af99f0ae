"""make_splits: determinism, disjointness, dedup before carving, balancing, size errors."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

from w2s_ray.config import SplitSizes
from w2s_ray.errors import UserError
from w2s_ray.tasks import SPLIT_NAMES, make_splits
from w2s_ray.tasks.base import FEATURES

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
    unbalanced = make_splits(ds, sizes, seed=0)
    assert Counter(unbalanced["a"]["label"])[1] < 41 // 2  # mostly negatives without balancing


def test_balance_with_too_few_of_a_class_is_user_error():
    ds = classify_ds(n=400, pos_frac=0.05)  # 20 positives
    with pytest.raises(UserError, match="label 1 but only 20"):
        make_splits(ds, SplitSizes(a=40, b=40, val=10, test=10), seed=0, balance=True)


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
        "for name in ('sciq', 'rm'):\n"
        f"    ds = load_task(name, {str(DATA)!r})\n"
        "    s = make_splits(ds, SplitSizes(50, 50, 50, 50), seed=7, balance=True)\n"
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
