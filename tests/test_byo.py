"""Bring-your-own data: a task YAML or a data file (JSONL or Parquet) as `--task`, classify and pairwise."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, SHARED_DATA
from w2s_ray.config import SplitSizes
from w2s_ray.errors import UserError
from w2s_ray.tasks import SPLIT_NAMES, TASKS, get_task, load_task, make_splits, ood_tasks
from w2s_ray.tasks.base import GROUP_SEP
from w2s_ray.tasks.splits import column

SIZES = SplitSizes(a=20, b=20, val=10, test=10)
REVIEWS = [{"title": f"review {i}", "content": f"the {i}th one was {'great' if i % 3 else 'awful'}",
            "sentiment": "pos" if i % 3 else "neg", "product": f"p{i // 4}"} for i in range(150)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def hh_rows(n: int) -> list[dict]:
    """The first `n` distinct pairs of the HH-RLHF harmless-base test file (read in place)."""
    with gzip.open(SHARED_DATA / "hh_rlhf" / "harmless-base.test.jsonl.gz", "rt") as fh:
        rows = [json.loads(line) for _, line in zip(range(n), fh)]
    return [r for r in rows if r["chosen"] != r["rejected"]]


def test_yaml_classify_jsonl_with_template_mapping_and_group(tmp_path):
    write_jsonl(tmp_path / "reviews.jsonl", REVIEWS)
    (tmp_path / "task.yaml").write_text(
        "name: my_reviews\nkind: classify\nlabel_meaning: sentiment_positive\npath: reviews.jsonl\n"
        "text: '{title}: {content}'\nlabel: {column: sentiment, positive: [pos], negative: [neg]}\n"
        "group: product\n")
    ds = load_task(str(tmp_path / "task.yaml"))
    assert get_task("my_reviews").kind == "classify" and "my_reviews" in TASKS
    assert len(ds) == len(REVIEWS)
    assert column(ds, "id")[:2] == ["reviews:0", "reviews:1"]
    assert column(ds, "text")[1] == "review 1: the 1th one was great"
    assert column(ds, "label") == [int(r["sentiment"] == "pos") for r in REVIEWS]
    assert column(ds, "group")[5] == "p1"
    splits = make_splits(ds, SIZES, seed=0)
    for k in SPLIT_NAMES:
        n = getattr(SIZES, k)
        assert Counter(column(splits[k], "label")) == {0: n // 2, 1: n - n // 2}
    products = [set(column(splits[k], "group")) for k in SPLIT_NAMES]
    assert all(not a & b for i, a in enumerate(products) for b in products[i + 1:])
    assert "sst2" in ood_tasks("my_reviews")  # the same label meaning: an OOD pair


def test_parquet_data_file_names_a_missing_column(tmp_path):
    path = tmp_path / "stars.parquet"
    pq.write_table(pa.Table.from_pylist([{"review": f"text {i}", "stars": 1 + i % 5} for i in range(200)]), path)
    with pytest.raises(UserError, match=r"missing required column 'text'.*stars\.parquet"):
        load_task(str(path))


def test_parquet_data_file_loads_and_splits(tmp_path):
    path = tmp_path / "stars.parquet"
    pq.write_table(pa.Table.from_pylist([{"review": f"text {i}", "stars": [1, 2, 4, 5][i % 4]} for i in range(200)]),
                   path)
    ds = load_task(str(path), options={"text": "review", "label": "stars", "positive": "4,5"})
    assert get_task(str(path)).name == "stars" and len(ds) == 200
    assert column(ds, "label") == [int([1, 2, 4, 5][i % 4] >= 4) for i in range(200)]
    assert column(ds, "id")[7] == "stars:7"
    assert all(len(s) == getattr(SIZES, k) for k, s in make_splits(ds, SIZES, seed=3).items())


def test_parquet_label_outside_the_mapping_is_named(tmp_path):
    path = tmp_path / "stars3.parquet"
    pq.write_table(pa.Table.from_pylist([{"review": f"text {i}", "stars": 1 + i % 5} for i in range(50)]), path)
    with pytest.raises(UserError, match=r"column 'stars' in file .*stars3.parquet.* has value 3, outside"):
        load_task(str(path), options={"text": "review", "label": "stars", "positive": "4,5", "negative": "1,2"})


def test_hh_transcripts_as_a_data_file_are_pairwise_grouped_by_prompt(tmp_path):
    rows = hh_rows(80)
    ds = load_task(str(write_jsonl(tmp_path / "hh.jsonl", rows)))
    assert get_task(str(tmp_path / "hh.jsonl")).kind == "pairwise"
    assert len(ds) == len(rows)
    for row, raw in zip(ds.to_list(), rows):
        chosen = row["text_a"] if row["label"] == 1 else row["text_b"]
        rejected = row["text_b"] if row["label"] == 1 else row["text_a"]
        assert (chosen, rejected) == (raw["chosen"], raw["rejected"])
        assert row["group"].split(GROUP_SEP)[0] == " ".join(raw["chosen"].rsplit("\n\nAssistant:", 1)[0].split())
    assert 0 < sum(column(ds, "label")) < len(ds)  # seeded coin flips, not all one order


def test_hh_with_a_prompt_field_joins_prompt_and_response(tmp_path):
    rows = []
    for r in hh_rows(80):
        prompt = r["chosen"].rsplit("\n\nAssistant:", 1)[0] + "\n\nAssistant:"
        if not r["rejected"].startswith(prompt):
            continue
        rows.append({"prompt": prompt, "chosen": r["chosen"][len(prompt):], "rejected": r["rejected"][len(prompt):]})
    rows += [{**rows[0], "chosen": " Another answer.", "rejected": " Yet another."}]  # a second pair, same prompt
    (tmp_path / "hh.yaml").write_text("kind: pairwise\npath: hh_prompted.jsonl\nprompt: prompt\n")
    write_jsonl(tmp_path / "hh_prompted.jsonl", rows)
    ds = load_task(str(tmp_path / "hh.yaml"))
    assert len(ds) == len(rows) > 40
    for row, raw in zip(ds.to_list(), rows):
        pair = {row["text_a"], row["text_b"]}
        assert pair == {raw["prompt"] + raw["chosen"], raw["prompt"] + raw["rejected"]}
        assert (row["text_a"] == raw["prompt"] + raw["chosen"]) == (row["label"] == 1)
        assert row["group"] == " ".join(raw["prompt"].split())
    assert column(ds, "group")[0] == column(ds, "group")[-1]
    splits = make_splits(ds, SplitSizes(a=10, b=10, val=6, test=6), seed=0)
    where = {g: k for k, s in splits.items() for g in column(s, "group")}
    assert len(where) == len({g for s in splits.values() for g in column(s, "group")})


def test_a_user_task_may_not_take_a_shipped_name(tmp_path):
    write_jsonl(tmp_path / "sst2.jsonl", REVIEWS)
    with pytest.raises(UserError, match="'sst2', the name of a shipped task"):
        get_task(str(tmp_path / "sst2.jsonl"))
    assert get_task("sst2").user is False


def test_an_edited_user_yaml_replaces_the_task(tmp_path):
    write_jsonl(tmp_path / "r.jsonl", REVIEWS)
    task_file = tmp_path / "mine.yaml"
    task_file.write_text("kind: classify\npath: r.jsonl\ntext: title\nlabel: {column: sentiment, positive: pos}\n")
    first = load_task(str(task_file))
    task_file.write_text("kind: classify\npath: r.jsonl\ntext: content\nlabel: {column: sentiment, positive: pos}\n")
    os.utime(task_file, ns=(1, 1))
    second = load_task(str(task_file))
    assert column(first, "text")[0] == "review 0" and column(second, "text")[0] == REVIEWS[0]["content"]


def test_run_cli_on_a_task_yaml_needs_no_data_dir_and_no_hub(tmp_path):
    write_jsonl(tmp_path / "reviews.jsonl", REVIEWS)
    (tmp_path / "task.yaml").write_text(
        "kind: classify\npath: reviews.jsonl\ntext: '{title} {content}'\nlabel: {column: sentiment, positive: pos}\n")
    env = {k: v for k, v in os.environ.items() if k != "W2S_DATA_DIR"}
    env.update(HF_HUB_OFFLINE="1", W2S_MODEL_CACHE=str(tmp_path / "models"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "w2s_ray.run", "--task", str(tmp_path / "task.yaml"), "--weak", "tiny-bert",
         "--strong", "tiny-bert", "--n-a", "32", "--n-b", "32", "--n-val", "16", "--n-test", "16", "--epochs", "1",
         "--weak-epochs", "1", "--ceiling-epochs", "1", "--max-length", "32", "--cache-dir", str(tmp_path / "c"),
         "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(out.read_text())["runs"][0]
    assert run["task"] == "task"
    assert 0 <= run["test"]["student_acc"] <= 1
