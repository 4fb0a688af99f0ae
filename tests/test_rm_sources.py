"""`rm` correct-vs-distractor pairs from multiple-choice data (sciq, piqa, cosmos_qa), checked
against the raw files of the real data dir."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from w2s_ray.config import SplitSizes
from w2s_ray.errors import UserError
from w2s_ray.tasks import DATA_DIR_ENV, SPLIT_NAMES, load_task, make_splits, registry
from w2s_ray.tasks.local import file_stem, read_records
from w2s_ray.tasks.splits import column

DATA = Path(os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data")
FILES = {
    "sciq": ("sciq/validation.jsonl.gz", "sciq/test.jsonl.gz"),
    "piqa": ("piqa/validation.jsonl.gz",),
    "cosmos_qa": ("cosmos_qa/validation.jsonl.gz",),
}
SIZES = {"sciq": SplitSizes(600, 600, 200, 500), "piqa": SplitSizes(600, 600, 150, 400),
         "cosmos_qa": SplitSizes(600, 600, 200, 500)}


@pytest.fixture(scope="module")
def data_dir() -> str:
    assert DATA.is_dir(), f"real data dir not found at {DATA} (set {DATA_DIR_ENV})"
    return str(DATA)


def raw_records(source: str) -> dict[str, dict]:
    """Row id -> raw record, read independently of the task code."""
    return {f"{file_stem(rel)}:{i}": rec for rel in FILES[source] for i, rec in enumerate(read_records(DATA / rel))}


def question_and_answers(source: str, rec: dict) -> tuple[str, str, set[str]]:
    """(question, correct answer, wrong answers), all stripped."""
    if source == "sciq":
        return (rec["question"].strip(), rec["correct_answer"].strip(),
                {rec[f"distractor{i}"].strip() for i in (1, 2, 3)} - {rec["correct_answer"].strip()})
    if source == "piqa":
        sols = [rec["sol1"].strip(), rec["sol2"].strip()]
        return rec["goal"].strip(), sols[rec["label"]], {sols[1 - rec["label"]]}
    answers = [rec[f"answer{i}"].strip() for i in range(4)]
    return rec["question"].strip(), answers[rec["label"]], set(answers) - {answers[rec["label"]]}


def stats(ds) -> dict[str, int]:
    return json.loads(ds.info.description)["stats"]


@pytest.mark.parametrize("source", sorted(FILES))
def test_mc_pairs_hold_the_correct_answer_iff_label_1(source, data_dir):
    ds = load_task("rm", data_dir, {"source": source})
    raw = raw_records(source)
    skipped = stats(ds).get("dropped_no_distinct_distractor", 0)
    assert len(ds) == len(raw) - skipped
    assert set(column(ds, "id")) <= set(raw)
    for row in ds:
        question, correct, wrong = question_and_answers(source, raw[row["id"]])
        a_answer, b_answer = (t.rsplit("\n\nAnswer: ", 1)[1] for t in (row["text_a"], row["text_b"]))
        preferred, other = (a_answer, b_answer) if row["label"] else (b_answer, a_answer)
        assert preferred == correct and other in wrong, row["id"]
        # the same prompt in both texts, and it holds the question
        assert row["text_a"].rsplit("\n\nAnswer: ", 1)[0] == row["text_b"].rsplit("\n\nAnswer: ", 1)[0]
        assert f"Question: {question}\n\nAnswer: " in row["text_a"] and f"Question: {question}" in row["text_b"]
    frac = sum(column(ds, "label")) / len(ds)
    assert 0.45 < frac < 0.55, frac


def test_mc_prompts_lead_with_support_or_context(data_dir):
    sciq, raw = load_task("rm", data_dir, {"source": "sciq"}), raw_records("sciq")
    with_support = [r for r in sciq if raw[r["id"]]["support"].strip()]
    assert 0 < len(with_support) < len(sciq)  # ~11% of SciQ rows have no support
    assert all(r["text_a"].startswith(f"Support: {raw[r['id']]['support'].strip()}\n\nQuestion: ")
               for r in with_support)
    assert all(r["text_a"].startswith("Question: ") for r in sciq if not raw[r["id"]]["support"].strip())
    cosmos, raw = load_task("rm", data_dir, {"source": "cosmos_qa"}), raw_records("cosmos_qa")
    row = cosmos[0]
    assert row["text_b"].startswith(f"Context: {raw[row['id']]['context'].strip()}\n\nQuestion: ")


@pytest.mark.parametrize("source, value", [("sciq", False), ("cosmos_qa", "false")])
def test_passage_false_leaves_out_the_passage_and_keeps_rows_labels_and_groups(source, value, data_dir):
    full = load_task("rm", data_dir, {"source": source})
    bare = load_task("rm", data_dir, {"source": source, "passage": value})
    assert column(bare, "id") == column(full, "id") and column(bare, "label") == column(full, "label")
    assert column(bare, "group") == column(full, "group")  # the same split for every row
    assert all(r["text_a"].startswith("Question: ") and r["text_b"].startswith("Question: ") for r in bare)
    for b, f in zip(bare.select(range(200)), full.select(range(200))):
        assert f["text_a"].endswith(b["text_a"]) and f["text_b"].endswith(b["text_b"])


def test_passage_option_rejects_a_non_boolean(data_dir):
    with pytest.raises(UserError, match=r"option passage='maybe' for task 'rm' is invalid; expected true or false"):
        load_task("rm", data_dir, {"source": "sciq", "passage": "maybe"})


def test_sciq_distractor_equal_to_the_answer_is_never_drawn(data_dir):
    ds = load_task("rm", data_dir, {"source": "sciq"})
    assert stats(ds) == {"distractor_equal_to_answer_ignored": 2}  # SOURCES.md: 2 such test rows
    assert all(row["text_a"] != row["text_b"] for row in ds)


def test_row_without_a_distinct_distractor_is_dropped_and_counted(tmp_path):
    rows = [{"question": f"q{i}", "support": "", "correct_answer": f"a{i}",
             "distractor1": f"d{i}", "distractor2": "", "distractor3": f"a{i}"} for i in range(20)]
    rows[3].update(distractor1=" A3 ", distractor3="a3")  # every distractor repeats the answer
    for split in ("validation", "test"):
        (tmp_path / "sciq").mkdir(exist_ok=True)
        with gzip.open(tmp_path / "sciq" / f"{split}.jsonl.gz", "wt") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    ds = load_task("rm", str(tmp_path), {"source": "sciq"})
    assert len(ds) == 38 and not any(i.endswith(":3") for i in column(ds, "id"))
    assert stats(ds) == {"dropped_no_distinct_distractor": 2, "distractor_equal_to_answer_ignored": 40}
    assert all("Answer: d" in (r["text_b"] if r["label"] else r["text_a"]) for r in ds)


@pytest.mark.parametrize("source", sorted(FILES))
def test_mc_pairs_are_deterministic_and_split(source, data_dir):
    first = load_task("rm", data_dir, {"source": source}).to_dict()
    registry._load_cached.cache_clear()
    ds = load_task("rm", data_dir, {"source": source})
    assert ds.to_dict() == first
    sizes = SIZES[source]
    splits = make_splits(ds, sizes, seed=0)
    assert [len(splits[k]) for k in SPLIT_NAMES] == [sizes.a, sizes.b, sizes.val, sizes.test]
    again = make_splits(load_task("rm", data_dir, {"source": source}), sizes, seed=0)
    assert all(again[k].to_dict() == splits[k].to_dict() for k in SPLIT_NAMES)


def test_hh_stays_the_default_source(data_dir):
    assert json.loads(load_task("rm", data_dir).info.description)["options"]["source"] == "hh"


def test_unknown_source_names_the_choices(data_dir):
    with pytest.raises(UserError) as err:
        load_task("rm", data_dir, {"source": "quail"})
    msg = str(err.value)
    assert "\n" not in msg and "source='quail'" in msg
    assert "allowed: hh, qa_feedback, sciq, piqa, cosmos_qa" in msg
