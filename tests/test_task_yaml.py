"""Simple tasks as YAML entries: the shipped YAML tasks give exactly the rows of the classes they replaced.

The expected rows are built here from the raw files with the former classes' formatting, and
their digest was recorded from those classes before the switch.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import SHARED_DATA
from w2s_ray.tasks import load_task
from w2s_ray.tasks.base import group_key
from w2s_ray.tasks.local import file_stem, read_records


def _text(value) -> str:
    return "" if value is None else str(value)


def _binary(value) -> int:
    if isinstance(value, str):
        value = {"0": 0, "1": 1, "false": 0, "true": 1}[value.strip().lower()]
    return int(value)


# The former classes' files and formatting (w2s_ray/tasks/nlp.py before the YAML tasks).
FORMER = {
    "sst2": (("sst2/train.jsonl.gz", "sst2/dev.jsonl.gz", "sst2/test.jsonl.gz"),
             lambda r: {"text": _text(r["sentence"]), "label": _binary(r["label"])}),
    "imdb": (tuple(f"imdb/{s}_sample_part{i}.jsonl.gz" for s in ("train", "test") for i in (0, 1)),
             lambda r: {"text": _text(r["text"]), "label": _binary(r["label"])}),
    "amazon_polarity": (("amazon_polarity/sample5000.jsonl.gz",),
                        lambda r: {"text": f"{_text(r['title'])} {_text(r['content'])}".strip(),
                                   "label": _binary(r["label"])}),
    "cola": (("cola/train.jsonl.gz", "cola/dev.jsonl.gz"),
             lambda r: {"text": _text(r["sentence"]), "label": _binary(r["label"])}),
    "boolq": (("boolq/validation.jsonl.gz",),
              lambda r: {"text": f"Passage: {_text(r['passage'])}\nQuestion: {_text(r['question'])}",
                         "label": _binary(r["answer"]), "group": group_key(r["passage"], r["question"])}),
}

# sha256 of the rows the former classes produced on shared/data (see `digest`).
FORMER_DIGESTS = {
    "sst2": "f8feb34a1a4e431ac3dde469773baff8e44684bff147bafbca5afc31e2115aeb",
    "imdb": "dac004c7c3fc309157d713809796b57ea770d7bb1a18821dee37e98b51f096a8",
    "amazon_polarity": "941ebcc426c0446460ff03ac64b7262d23362f8aa418e9509317a047edc1ee57",
    "cola": "aa993c9410f5f8f10a5f97cd518bbff11fc12f40cb2290651b9e30c444633093",
    "boolq": "2c01d48c8d67d5d8898e5f27a3688c44d00e372eec74f6b83b5eb40a522861a5",
}


def former_rows(name: str) -> list[dict]:
    files, fmt = FORMER[name]
    rows = []
    for rel in files:
        for i, rec in enumerate(read_records(SHARED_DATA / rel)):
            row = fmt(rec)
            if row["text"].strip():
                rows.append({"id": f"{file_stem(rel)}:{i}", **row})
    return rows


def digest(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(FORMER))
def test_yaml_task_rows_equal_the_former_class(name, data_dir):
    got = load_task(name, data_dir).to_list()
    want = former_rows(name)
    assert len(got) == len(want)
    assert got == want
    assert digest(got) == FORMER_DIGESTS[name]


FORMER_META = {  # kind, label_meaning, description, hub sources (id, config, splits)
    "sst2": ("classify", "sentiment_positive", "SST-2 sentences; label 1 = positive",
             [("stanfordnlp/sst2", None, ("train", "validation"))]),
    "imdb": ("classify", "sentiment_positive", "IMDB movie reviews; label 1 = positive",
             [("stanfordnlp/imdb", None, ("train", "test"))]),
    "amazon_polarity": ("classify", "sentiment_positive", "Amazon reviews as 'title content'; label 1 = positive",
                        [("fancyzhx/amazon_polarity", None, ("test",))]),
    "cola": ("classify", "grammatical", "CoLA sentences; label 1 = grammatically acceptable",
             [("nyu-mll/glue", "cola", ("train", "validation"))]),
    "boolq": ("classify", "boolq_answer_yes", "BoolQ 'Passage: ...\\nQuestion: ...'; label 1 = the answer is yes",
              [("google/boolq", None, ("train", "validation"))]),
}


@pytest.mark.parametrize("name", sorted(FORMER_META))
def test_yaml_task_metadata_equals_the_former_class(name):
    from w2s_ray.tasks import get_task

    task = get_task(name)
    kind, meaning, description, hub = FORMER_META[name]
    assert (task.kind, task.label_meaning, task.description, task.options) == (kind, meaning, description, {})
    assert [(h.hf_id, h.config, h.splits) for h in task.hub_sources({})] == hub
    assert task.hf_id == hub[0][0]
