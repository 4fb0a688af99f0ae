"""Task registry: a contract test over every registered task on the real data, per-task
semantics checked against the raw files, the hub path (mocked), and every bad-input kind."""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import os
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest

from w2s_ray.config import SplitSizes
from w2s_ray.errors import UserError
from w2s_ray.tasks import (
    COLUMNS,
    DATA_DIR_ENV,
    SPLIT_NAMES,
    TASKS,
    get_task,
    load_task,
    make_splits,
    ood_tasks,
    registry,
    resolve_data_dir,
)
from w2s_ray.tasks.base import GROUP, GROUP_SEP, columns
from w2s_ray.tasks.local import read_records
from w2s_ray.tasks.splits import column, row_groups

DATA = Path(os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data")
SIZES = SplitSizes(a=601, b=600, val=301, test=500)  # about the quick preset's; odd sizes on purpose
PAIR_SIZES = SplitSizes(a=301, b=300, val=200, test=399)
MULTIPLE_CHOICE = ("sciq", "cosmos_qa", "piqa", "quail", "dream", "anthropic_hh")


@pytest.fixture(scope="module")
def data_dir() -> str:
    assert DATA.is_dir(), f"real data dir not found at {DATA} (set {DATA_DIR_ENV})"
    return str(DATA)


@functools.cache
def raw_file(stem: str) -> list[dict]:
    return read_records(next(DATA.glob(f"{stem}.*gz")))


def raw(row_id: str) -> dict:
    """The raw record behind a local row id '<file stem>:<index>[:q<j>][:<variant>]'."""
    stem, idx, *rest = row_id.split(":")
    rec = raw_file(stem)[int(idx)]
    rest = [r for r in rest if re.fullmatch(r"q\d+", r)]
    if rest:  # dream: one row per question
        rec = {"dialogue": rec["dialogue"], **rec["questions"][int(rest[0][1:])]}
    return rec


@pytest.fixture
def fresh_cache():
    """Clear the per-process load cache around a test that loads fake (mocked hub) data."""
    registry._load_cached.cache_clear()
    yield
    registry._load_cached.cache_clear()


def split_texts(split: datasets.Dataset) -> set[str]:
    cols = [c for c in split.column_names if c.startswith("text")]
    return {t.strip() for c in cols for t in column(split, c)}


def split_groups(split: datasets.Dataset) -> set[str]:
    """Every group key of a split's rows (empty if the task emits no `group` column)."""
    if GROUP not in split.column_names:
        return set()
    return {k for g in column(split, GROUP) for k in g.split(GROUP_SEP) if k}


# --- contract: every registered task ------------------------------------------------------

def test_every_task_has_metadata():
    shipped = {name: task for name, task in TASKS.items() if not getattr(task, "user", False)}  # not your own
    assert len(shipped) >= 18
    for name, task in shipped.items():
        assert task.name == name
        assert task.kind in COLUMNS
        assert task.label_meaning and task.hf_id and isinstance(task.options, dict)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_contract(name, data_dir):
    """Every task, real data: columns, ids; default splits balanced exactly, deterministic, leak-free."""
    task = get_task(name)
    ds = load_task(name, data_dir)
    assert tuple(ds.column_names) in (columns(task.kind), columns(task.kind, grouped=True))
    assert ds.features["label"].dtype == "int64" and ds.features["id"].dtype == "string"
    ids = list(column(ds, "id"))
    assert len(ids) == len(set(ids)), "row ids must be unique"
    labels = Counter(column(ds, "label"))
    assert set(labels) == {0, 1}, labels
    for col in COLUMNS[task.kind][1:-1]:
        assert all(isinstance(t, str) and t.strip() for t in column(ds, col))

    sizes = PAIR_SIZES if task.kind == "pairwise" else SIZES
    splits = make_splits(ds, sizes, seed=0)
    assert tuple(splits) == SPLIT_NAMES
    for k, split in splits.items():
        n = getattr(sizes, k)
        assert len(split) == n
        assert Counter(column(split, "label")) == Counter({0: n // 2, 1: n - n // 2}), k
    again = make_splits(load_task(name, data_dir), sizes, seed=0)
    assert all(column(again[k], "id") == column(splits[k], "id") for k in SPLIT_NAMES)
    assert all(again[k].to_dict() == splits[k].to_dict() for k in SPLIT_NAMES)
    other = make_splits(ds, sizes, seed=1)
    assert any(set(column(other[k], "id")) != set(column(splits[k], "id")) for k in SPLIT_NAMES)

    for balance, parts in ((True, splits), (False, make_splits(ds, sizes, seed=2, balance=False))):
        for x, y in itertools.combinations(SPLIT_NAMES, 2):
            assert not set(column(parts[x], "id")) & set(column(parts[y], "id"))
            assert not split_texts(parts[x]) & split_texts(parts[y]), f"text shared by {x} and {y} ({balance=})"
            assert not split_groups(parts[x]) & split_groups(parts[y]), f"group shared by {x} and {y} ({balance=})"
    for split in splits.values():
        col = "text" if task.kind == "classify" else "text_a"
        assert len(set(column(split, col))) == len(split)


@pytest.mark.parametrize("name", ["boolq", "cosmos_qa", "quail", "dream", "ethics_deontology",
                                  "ethics_virtue", "ethics_utilitarianism", "piqa"])
def test_tasks_with_shared_contexts_emit_groups(name, data_dir):
    ds = load_task(name, data_dir)
    assert all(column(ds, GROUP))
    assert len(row_groups(ds)) < len({t.strip() for t in column(ds, "text")})  # rows do share them


def test_too_large_balanced_splits_name_the_sizes_that_fit(data_dir):
    ds = load_task("boolq", data_dir)  # 1,237 rows of label 0 (38%)
    sizes = SplitSizes(a=1000, b=1000, val=300, test=500)
    with pytest.raises(UserError) as err:
        make_splits(ds, sizes, seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "'boolq'" in msg and "lower the sizes: at most a=" in msg
    assert "fit with balanced classes" in msg
    fit = dict(re.findall(r"\b(a|b|val|test)=(\d+)", msg.split("at most", 1)[1]))
    fit_sizes = SplitSizes(**{k: int(v) for k, v in fit.items()})
    assert 0 < fit_sizes.a < 1000
    splits = make_splits(ds, fit_sizes, seed=0)
    assert all(Counter(column(s, "label"))[0] == getattr(fit_sizes, k) // 2 for k, s in splits.items())


def test_sentiment_tasks_share_label_meaning_for_ood():
    meaning = {n: t.label_meaning for n, t in TASKS.items()}
    assert meaning["sst2"] == meaning["imdb"] == meaning["amazon_polarity"]
    assert meaning["sciq"] != meaning["sst2"]
    # among shipped tasks (a user task registered earlier in the session may share the meaning)
    assert [t for t in ood_tasks("sst2") if not getattr(TASKS[t], "user", False)] == ["amazon_polarity", "imdb"]
    assert "sst2" not in ood_tasks("sciq")


def test_load_is_deterministic_without_cache(data_dir):
    first = load_task("quail", data_dir).to_dict()
    registry._load_cached.cache_clear()
    assert load_task("quail", data_dir).to_dict() == first


def test_returned_datasets_do_not_share_format_state(data_dir):
    one = load_task("sst2", data_dir)
    one.set_format("numpy")
    assert isinstance(load_task("sst2", data_dir)[0]["text"], str)


# --- per-task semantics against the raw records -------------------------------------------

def test_sciq_negatives_show_a_distractor_and_positives_the_answer(data_dir):
    ds = load_task("sciq", data_dir)
    for row in ds.select(range(400)):
        rec = raw(row["id"])
        answer = row["text"].split(" A: ", 1)[1]
        assert row["text"] == f"Q: {rec['question']} A: {answer}"
        assert row["group"] == " ".join(rec["question"].split())
        if row["label"]:
            assert answer == rec["correct_answer"] and row["id"].endswith(":correct")
        else:
            assert answer != rec["correct_answer"] and row["id"].endswith(":distractor")
            assert answer in {rec["distractor1"], rec["distractor2"], rec["distractor3"]}


@pytest.mark.parametrize("name", MULTIPLE_CHOICE)
def test_multiple_choice_gives_each_question_a_positive_and_a_negative_in_one_group(name, data_dir):
    ds = load_task(name, data_dir)
    per_question: dict[str, list[tuple[int, str]]] = {}
    for row_id, label, group in zip(column(ds, "id"), column(ds, "label"), column(ds, GROUP)):
        per_question.setdefault(row_id.rsplit(":", 1)[0], []).append((label, group))
    forced = json.loads(ds.info.description)["stats"].get("none_of_the_above_only_label_0", 0)
    shapes = Counter(tuple(sorted(label for label, _ in rows)) for rows in per_question.values())
    assert shapes == Counter({(0, 1): len(per_question) - forced, **({(0,): forced} if forced else {})})
    assert all(len({g for _, g in rows}) == 1 for rows in per_question.values())
    assert (name == "cosmos_qa") == (forced > 0)


def test_dream_has_one_row_per_question(data_dir):
    n_questions = sum(len(r["questions"]) for s in ("train", "dev", "test")
                      for r in read_records(DATA / "dream" / f"{s}.jsonl.gz"))
    ds = load_task("dream", data_dir)
    assert len(ds) == 2 * n_questions  # a correct and a distractor row per question
    row = ds[0]
    rec = raw(row["id"])
    assert row["text"].startswith("\n".join(rec["dialogue"])) and rec["question"] in row["text"]
    assert row["id"].endswith(":q0:correct") and row["text"].endswith(f"A: {rec['answer']}")


def test_anthropic_hh_shows_chosen_iff_label_1(data_dir):
    ds = load_task("anthropic_hh", data_dir, {"hh_splits": "helpful-base"})
    assert all(i.startswith("hh_rlhf/helpful-base.test:") for i in column(ds, "id"))
    for row in ds.select(range(300)):
        rec = raw(row["id"])
        assert row["text"] == (rec["chosen"] if row["label"] else rec["rejected"])
        assert row["id"].endswith(":chosen" if row["label"] else ":rejected")


def test_rm_pairs_keep_preference_and_drop_ties(data_dir):
    files = sorted((DATA / "hh_rlhf").glob("*.jsonl.gz"))
    recs = [r for f in files for r in read_records(f)]
    ties = sum(r["chosen"] == r["rejected"] for r in recs)
    ds = load_task("rm", data_dir)
    assert len(ds) == len(recs) - ties and ties > 0
    assert f'"dropped_chosen_equals_rejected": {ties}' in ds.info.description
    for row in ds.select(range(500)):
        rec = raw(row["id"])
        assert (row["text_a"], row["text_b"]) == ((rec["chosen"], rec["rejected"]) if row["label"]
                                                  else (rec["rejected"], rec["chosen"]))
    frac = sum(column(ds, "label")) / len(ds)
    assert 0.45 < frac < 0.55


def test_rm_hh_splits_option_accepts_list_or_comma_string(data_dir):
    as_list = load_task("rm", data_dir, {"hh_splits": ["helpful-online", "harmless-base"]})
    as_str = load_task("rm", data_dir, {"hh_splits": "helpful-online, harmless-base"})
    assert as_list.to_dict() == as_str.to_dict()
    assert {i.split(".test:")[0] for i in column(as_list, "id")} == {"hh_rlhf/helpful-online", "hh_rlhf/harmless-base"}


def test_rm_qa_feedback_source(data_dir):
    ds = load_task("rm", data_dir, {"source": "qa_feedback"})
    n_raw = len(read_records(DATA / "qa_feedback_preferences" / "dev_pairs.jsonl.gz"))
    assert 0 < len(ds) <= n_raw
    row = ds[0]
    rec = raw(row["id"])
    preferred = row["text_a"] if row["label"] else row["text_b"]
    assert preferred == f"Question: {rec['question']}\n\nAnswer: {rec['chosen']}"
    # 4 answers per question share texts across pairs; splits must still be text-disjoint
    splits = make_splits(ds, SplitSizes(300, 300, 200, 200), seed=0)
    for x, y in itertools.combinations(SPLIT_NAMES, 2):
        assert not split_texts(splits[x]) & split_texts(splits[y])


def test_ethics_utilitarianism_label_says_which_is_more_pleasant(data_dir):
    ds = load_task("ethics_utilitarianism", data_dir)
    for row in ds.select(range(300)):
        rec = raw(row["id"])
        first = row["text"].split("\n1) ", 1)[1].split("\n2) ", 1)[0]
        assert first == (rec["baseline"] if row["label"] else rec["less_pleasant"])


# --- data dir resolution and the hub path -------------------------------------------------

def test_resolve_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert resolve_data_dir("/explicit") == "/explicit"
    assert resolve_data_dir(None) == str(tmp_path)
    monkeypatch.delenv(DATA_DIR_ENV)
    assert resolve_data_dir(None) is None


def test_env_data_dir_is_used(monkeypatch, data_dir):
    monkeypatch.setenv(DATA_DIR_ENV, data_dir)
    assert load_task("piqa").to_dict() == load_task("piqa", data_dir).to_dict()


def test_hub_path_calls_load_dataset(monkeypatch, fresh_cache):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    calls = []

    def fake_load_dataset(path, name=None, *, data_dir=None, split=None, streaming=False):
        calls.append((path, name, split))
        rows = [{"sentence": f"{split} {i}", "label": i % 2, "idx": i} for i in range(6)]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = load_task("sst2")
    assert calls == [("stanfordnlp/sst2", None, "train"), ("stanfordnlp/sst2", None, "validation")]
    assert len(ds) == 12 and ds[0]["text"] == "train 0" and ds[0]["id"].startswith("hub:")
    assert "Hugging Face hub" in ds.info.description


def test_hub_sources_for_hh_subsets_and_streamed_chess(monkeypatch, fresh_cache):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    calls = []
    puzzle = {"FEN": "5rk1/1p3ppp/pq3b2/8/8/1P1Q1N2/P4PPP/3R2K1 w - - 2 27", "Moves": "d3d6 f8d8 d6d8 f6d8"}

    def fake_load_dataset(path, name=None, *, data_dir=None, split=None, streaming=False):
        calls.append((path, data_dir, split, streaming))
        if path == "Lichess/chess-puzzles":  # 3 copies of one puzzle: deduplicated to 1 row
            return datasets.Dataset.from_list([puzzle] * 3).to_iterable_dataset()
        return datasets.Dataset.from_list(
            [{"chosen": f"{data_dir} {split} {i} good", "rejected": f"{data_dir} {split} {i} bad"} for i in range(8)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = load_task("rm", None, {"hh_splits": "helpful-base"})
    assert calls == [("Anthropic/hh-rlhf", "helpful-base", s, False) for s in ("train", "test")]
    assert len(ds) == 16 and all((r["text_a"] if r["label"] else r["text_b"]).endswith("good") for r in ds)
    calls.clear()
    with pytest.raises(UserError, match="single class"):  # one puzzle -> one row -> one label
        load_task("chess")
    assert calls == [("Lichess/chess-puzzles", None, "train", True)]


def test_hub_failure_is_one_line_user_error(monkeypatch, fresh_cache):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="could not load stanfordnlp/sst2") as err:
        load_task("sst2")
    assert "--data-dir" in str(err.value)


def test_qa_feedback_without_data_dir_asks_for_one(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(UserError, match="data dir"):
        load_task("rm", None, {"source": "qa_feedback"})


# --- bad input ------------------------------------------------------------------------------

def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def sst2_dir(tmp_path: Path, rows: list[dict] | None = None) -> Path:
    rows = rows if rows is not None else [{"sentence": f"s{i}", "label": i % 2} for i in range(10)]
    for split in ("train", "dev", "test"):
        write_jsonl_gz(tmp_path / "sst2" / f"{split}.jsonl.gz", rows)
    return tmp_path


def one_line_error(*args) -> str:
    with pytest.raises(UserError) as err:
        load_task(*args)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_unknown_task_lists_available():
    with pytest.raises(UserError, match=r"unknown task 'sst3'; available: .*sst2"):
        get_task("sst3")


def test_missing_data_dir(tmp_path):
    msg = one_line_error("sst2", str(tmp_path / "nope"))
    assert "does not exist" in msg and str(tmp_path / "nope") in msg


def test_missing_file_names_expected_path(tmp_path):
    msg = one_line_error("sst2", str(tmp_path))
    assert "missing data file" in msg and str(tmp_path / "sst2" / "train.jsonl.gz") in msg


def test_empty_file(tmp_path):
    d = sst2_dir(tmp_path)
    with gzip.open(d / "sst2" / "dev.jsonl.gz", "wb"):
        pass
    msg = one_line_error("sst2", str(d))
    assert "empty" in msg and "dev.jsonl.gz" in msg


def test_corrupt_gzip(tmp_path):
    d = sst2_dir(tmp_path)
    (d / "sst2" / "test.jsonl.gz").write_bytes(b"this is not gzip at all")
    assert "not a valid gzip file" in one_line_error("sst2", str(d))


def test_truncated_gzip(tmp_path):
    d = sst2_dir(tmp_path, [{"sentence": f"sentence number {i}", "label": i % 2} for i in range(500)])
    path = d / "sst2" / "test.jsonl.gz"
    path.write_bytes(path.read_bytes()[:200])
    assert "not a valid gzip file" in one_line_error("sst2", str(d))


def test_invalid_json_line(tmp_path):
    d = sst2_dir(tmp_path)
    with gzip.open(d / "sst2" / "dev.jsonl.gz", "wt") as fh:
        fh.write('{"sentence": "ok", "label": 1}\n{"sentence": broken\n')
    msg = one_line_error("sst2", str(d))
    assert "line 2 is not valid JSON" in msg and "dev.jsonl.gz" in msg


def test_missing_column_names_column_and_file(tmp_path):
    d = sst2_dir(tmp_path, [{"text": "no sentence column", "label": 1}])
    msg = one_line_error("sst2", str(d))
    assert "missing required column 'sentence'" in msg and "train.jsonl.gz" in msg


def test_single_class_data(tmp_path):
    d = sst2_dir(tmp_path, [{"sentence": f"s{i}", "label": 1} for i in range(10)])
    msg = one_line_error("sst2", str(d))
    assert "single class" in msg and "'sst2'" in msg


def test_non_binary_label(tmp_path):
    d = sst2_dir(tmp_path, [{"sentence": "x", "label": 3}])
    assert "expected a binary label" in one_line_error("sst2", str(d))


def test_unknown_option(data_dir):
    msg = one_line_error("sst2", data_dir, {"shuffle": True})
    assert "unknown option 'shuffle'" in msg and "'sst2'" in msg


@pytest.mark.parametrize("task, options, fault", [
    ("rm", {"source": "shp"}, "source='shp'"),
    ("rm", {"hh_splits": "helpful-base,train"}, "'train' is not allowed"),
    ("anthropic_hh", {"hh_splits": []}, "empty list"),
    ("chess", {"distractors": "hard"}, "distractors='hard'"),
])
def test_invalid_option_values(task, options, fault, data_dir):
    assert fault in one_line_error(task, data_dir, options)
