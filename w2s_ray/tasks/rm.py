"""`rm`: pairwise reward modelling on HH-RLHF or QA-Feedback preference pairs.

Rows: `text_a`, `text_b`, `label` (1 = text_a is the preferred response). Each pair's order is
a coin flip from the row's seeded RNG, so the labels are balanced (in expectation) and the
order carries no signal. Pairs whose chosen == rejected are dropped (counted in the stats).

Options:
  source     "hh" (default) | "qa_feedback"
  hh_splits  subset of the four HH files (list or comma-separated string; default all four)
QA-Feedback texts are "Question: ...\\n\\nAnswer: ..." (the dev pairs omit the passages);
it has no Hugging Face dataset, so it needs a data dir.
"""

from __future__ import annotations

from typing import Any, ClassVar

from w2s_ray.tasks.base import RecordTask, choice_option, list_option
from w2s_ray.tasks.hub import HubSource
from w2s_ray.tasks.nlp import HH_HF_ID, HH_SPLITS, text
from w2s_ray.tasks.registry import register

RM_SOURCES: tuple[str, ...] = ("hh", "qa_feedback")
QA_FEEDBACK_FILE = "qa_feedback_preferences/dev_pairs.jsonl.gz"


@register
class RewardModelTask(RecordTask):
    name = "rm"
    kind = "pairwise"
    label_meaning = "response_preferred"
    description = "preference pairs (HH-RLHF or QA-Feedback); label 1 = text_a is the preferred response"
    options: ClassVar[dict[str, Any]] = {"source": "hh", "hh_splits": HH_SPLITS}
    hub = (HubSource(HH_HF_ID),)
    required = ("chosen", "rejected")

    def check_options(self, options):
        return {
            **options,
            "source": choice_option(self.name, "source", options["source"], RM_SOURCES),
            "hh_splits": list_option(self.name, "hh_splits", options["hh_splits"], HH_SPLITS),
        }

    def required_columns(self, options):
        return ("question", *self.required) if options["source"] == "qa_feedback" else self.required

    def local_files(self, options):
        if options["source"] == "qa_feedback":
            return (QA_FEEDBACK_FILE,)
        return tuple(f"hh_rlhf/{s}.test.jsonl.gz" for s in options["hh_splits"])

    def hub_sources(self, options):
        if options["source"] == "qa_feedback":
            return ()  # no hub copy of the QA-Feedback pairs: RecordTask asks for a data dir
        return tuple(HubSource(HH_HF_ID, data_dir=s, splits=("train", "test")) for s in options["hh_splits"])

    def format(self, rec, rng, options, source, stats):
        chosen, rejected = text(rec["chosen"]), text(rec["rejected"])
        if chosen == rejected:
            stats["dropped_chosen_equals_rejected"] += 1
            return None
        if options["source"] == "qa_feedback":
            question = text(rec["question"])
            chosen, rejected = (f"Question: {question}\n\nAnswer: {r}" for r in (chosen, rejected))
        label = int(rng.random() < 0.5)
        a, b = (chosen, rejected) if label else (rejected, chosen)
        return {"text_a": a, "text_b": b, "label": label}
