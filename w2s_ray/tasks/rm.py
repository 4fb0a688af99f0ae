"""`rm`: pairwise reward modelling on preference pairs.

Rows: `text_a`, `text_b`, `label` (1 = text_a is the preferred response). Each pair's order is
a coin flip from the row's seeded RNG, so the labels are balanced (in expectation) and the
order carries no signal. Pairs whose chosen == rejected are dropped (counted in the stats).

Options:
  source     "hh" (default) | "qa_feedback" | "sciq" | "piqa" | "cosmos_qa"
  hh_splits  subset of the four HH files (list or comma-separated string; default all four)
  passage    true (default) | false: keep SciQ's support / CosmosQA's context passage in the prompt
             (SciQ pairs with the passage are near-solved by every model: no weak-to-strong gap)
QA-Feedback texts are "Question: ...\\n\\nAnswer: ..." (the dev pairs omit the passages);
it has no Hugging Face dataset, so it needs a data dir.

The multiple-choice sources read the same files (or hub datasets) as the classify tasks of the
same name and turn each question into ONE correct-vs-distractor pair: chosen = the question
with its correct answer, rejected = the same question with one distractor drawn by the row's
RNG. Texts are "[Support|Context: ...\\n\\n]Question: ...\\n\\nAnswer: ..." (SciQ's support
only where it is non-empty; PIQA's goal is the question). Distractors equal to the correct
answer (ignoring case and surrounding whitespace) or empty are never drawn; a row left with
none is dropped. Unlike the classify task, a CosmosQA row whose correct answer is "None of the
above choices ." stays a normal pair (that answer is also a distractor in most other rows).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

from w2s_ray.tasks.base import RecordTask, binary, bool_option, choice_option, group_key, list_option
from w2s_ray.tasks.hub import HubSource
from w2s_ray.tasks.local import Record
from w2s_ray.tasks.nlp import HH_HF_ID, HH_SPLITS, CosmosQA, Piqa, SciQ, index, text
from w2s_ray.tasks.registry import register

# Multiple-choice sources -> the classify task whose files, hub sources and columns they share.
MC_SOURCES: dict[str, type[RecordTask]] = {"sciq": SciQ, "piqa": Piqa, "cosmos_qa": CosmosQA}
RM_SOURCES: tuple[str, ...] = ("hh", "qa_feedback", *MC_SOURCES)
QA_FEEDBACK_FILE = "qa_feedback_preferences/dev_pairs.jsonl.gz"


def _same(x: str, y: str) -> bool:
    return x.strip().casefold() == y.strip().casefold()


def mc_question(source: str, rec: Record, src: str,
                passage: bool = True) -> tuple[list[tuple[str, str]], str, list[str]]:
    """(labelled prompt parts, correct answer, the other options) of one multiple-choice record;
    ``passage=False`` leaves out SciQ's support and CosmosQA's context."""
    if source == "sciq":
        support = text(rec.get("support")).strip() if passage else ""
        parts = [("Support", support)] if support else []
        candidates = [text(rec[f"distractor{i}"]) for i in (1, 2, 3)]
        return [*parts, ("Question", text(rec["question"]))], text(rec["correct_answer"]), candidates
    if source == "piqa":
        sols = [text(rec["sol1"]), text(rec["sol2"])]
        right = binary(rec["label"], "label", src)  # 0 -> sol1, 1 -> sol2
        return [("Question", text(rec["goal"]))], sols[right], [sols[1 - right]]
    if source == "cosmos_qa":
        answers = [text(rec[f"answer{i}"]) for i in range(4)]
        parts = [("Context", text(rec["context"]))] if passage else []
        parts.append(("Question", text(rec["question"])))
        right = index(rec["label"], 4, "label", src)
        return parts, answers[right], [a for i, a in enumerate(answers) if i != right]
    raise ValueError(f"not a multiple-choice source: {source!r}")


def mc_pair(source: str, rec: Record, rng: random.Random, src: str,
            stats: Counter[str], passage: bool = True) -> tuple[str, str] | None:
    """(chosen, rejected) texts for one multiple-choice record, or None if it has no distractor."""
    parts, correct, candidates = mc_question(source, rec, src, passage)
    correct = correct.strip()
    pool = [c.strip() for c in candidates if c.strip()]
    distractors = list(dict.fromkeys(c for c in pool if not _same(c, correct)))
    if any(_same(c, correct) for c in pool):
        stats["distractor_equal_to_answer_ignored"] += 1
    if not correct or not distractors:
        stats["dropped_no_distinct_distractor"] += 1
        return None
    prompt = "\n\n".join(f"{name}: {value.strip()}" for name, value in parts)
    chosen, rejected = (f"{prompt}\n\nAnswer: {a}" for a in (correct, rng.choice(distractors)))
    return chosen, rejected


def prompt_group(source: str, rec: Record, chosen: str, rejected: str) -> str:
    """What pairs may share (their context, question or HH prompt): one split each, never two."""
    if source == "qa_feedback":
        return group_key(rec["question"])
    if source in MC_SOURCES:
        # the group ignores `passage`, so leaving the passage out never changes which split a row joins
        parts, _, _ = mc_question(source, rec, "rm")
        # CosmosQA's questions repeat across stories ("What may happen next?"): group by story only
        keys = [v for name, v in parts if name == "Context"] if source == "cosmos_qa" else [v for _, v in parts]
        return group_key(*keys)
    return group_key(os.path.commonprefix([chosen, rejected]).rsplit("Assistant:", 1)[0])  # noqa: RUF071 (strings)


@register
class RewardModelTask(RecordTask):
    name = "rm"
    kind = "pairwise"
    label_meaning = "response_preferred"
    description = ("preference pairs (HH-RLHF, QA-Feedback, or correct-vs-distractor answers from "
                   "SciQ/PIQA/CosmosQA); label 1 = text_a is the preferred response")
    options: dict[str, Any] = {"source": "hh", "hh_splits": HH_SPLITS, "passage": True}  # noqa: RUF012 (a default; SpecTask sets its own)
    hub = (HubSource(HH_HF_ID),)
    required = ("chosen", "rejected")

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {
            **options,
            "source": choice_option(self.name, "source", options["source"], RM_SOURCES),
            "hh_splits": list_option(self.name, "hh_splits", options["hh_splits"], HH_SPLITS),
            "passage": bool_option(self.name, "passage", options["passage"]),
        }

    def required_columns(self, options: dict[str, Any]) -> tuple[str, ...]:
        source = options["source"]
        if source in MC_SOURCES:
            return MC_SOURCES[source].required
        return ("question", *self.required) if source == "qa_feedback" else self.required

    def local_files(self, options: dict[str, Any]) -> tuple[str, ...]:
        source = options["source"]
        if source in MC_SOURCES:
            return MC_SOURCES[source].files
        if source == "qa_feedback":
            return (QA_FEEDBACK_FILE,)
        return tuple(f"hh_rlhf/{s}.test.jsonl.gz" for s in options["hh_splits"])

    def hub_sources(self, options: dict[str, Any]) -> tuple[HubSource, ...]:
        source = options["source"]
        if source in MC_SOURCES:
            return MC_SOURCES[source].hub
        if source == "qa_feedback":
            return ()  # no hub copy of the QA-Feedback pairs: RecordTask asks for a data dir
        return tuple(HubSource(HH_HF_ID, data_dir=s, splits=("train", "test")) for s in options["hh_splits"])

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> dict[str, Any] | None:
        if options["source"] in MC_SOURCES:
            pair = mc_pair(options["source"], rec, rng, source, stats, options["passage"])
            if pair is None:
                return None
            chosen, rejected = pair
        else:
            chosen, rejected = text(rec["chosen"]), text(rec["rejected"])
        if chosen == rejected:
            stats["dropped_chosen_equals_rejected"] += 1
            return None
        group = prompt_group(options["source"], rec, chosen, rejected)
        if options["source"] == "qa_feedback":
            question = text(rec["question"])
            chosen, rejected = (f"Question: {question}\n\nAnswer: {r}" for r in (chosen, rejected))
        label = int(rng.random() < 0.5)
        a, b = (chosen, rejected) if label else (rejected, chosen)
        return {"text_a": a, "text_b": b, "label": label, "group": group}
