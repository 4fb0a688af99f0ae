"""Binary NLP tasks in the weak-to-strong paper's binary format.

Formats follow openai/weak-to-strong `weak_to_strong/datasets.py` (sciq, boolq, cosmos_qa,
amazon_polarity, anthropic_hh) and EleutherAI/w2s `w2s/ds_registry.py` (sst2, cola, dream,
piqa, quail, ethics). Multiple-choice data becomes binary as the reference code does: with
probability 1/2 the question is shown with its correct answer (label 1), otherwise with one
distractor (label 0); both draws come from the row's own seeded RNG (see `base.py`).

Local files hold only the splits listed in `../shared/data/SOURCES.md`; all of a task's files
are pooled (see `splits.py` for why that is safe).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, ClassVar, Sequence

from w2s_ray.errors import UserError
from w2s_ray.tasks.base import RecordTask, binary, list_option
from w2s_ray.tasks.hub import HubSource
from w2s_ray.tasks.local import require_columns
from w2s_ray.tasks.registry import register

HH_SPLITS: tuple[str, ...] = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
HH_HF_ID = "Anthropic/hh-rlhf"


def text(value: Any) -> str:
    """A record field as text ('' for a missing/null value, so empty rows get dropped)."""
    return "" if value is None else str(value)


def index(value: Any, n: int, column: str, source: str) -> int:
    """An answer index in [0, n); UserError naming the column and file otherwise."""
    try:
        i = int(value)
    except (TypeError, ValueError):
        i = -1
    if not 0 <= i < n or isinstance(value, bool):
        raise UserError(f"column {column!r} in {source} has value {value!r}; expected an index 0-{n - 1}")
    return i


def pick_answer(rng: random.Random, correct: str, candidates: Sequence[Any],
                stats: Counter[str]) -> tuple[str, int] | None:
    """(answer, label): the correct answer with label 1, or a distractor with label 0.

    Candidates equal to the correct answer are never used as distractors. A record with no
    distractor is dropped (None) whatever label it drew, so dropping cannot bias the labels.
    """
    label = int(rng.random() < 0.5)
    distractors = list(dict.fromkeys(text(c) for c in candidates if text(c).strip() and text(c) != correct))
    if not distractors:
        stats["dropped_no_distractor"] += 1
        return None
    return (correct, 1) if label else (rng.choice(distractors), 0)


class BinaryTask(RecordTask):
    kind = "classify"
    options: ClassVar[dict[str, Any]] = {}


@register
class Sst2(BinaryTask):
    name = "sst2"
    label_meaning = "sentiment_positive"
    description = "SST-2 sentences; label 1 = positive"
    files = ("sst2/train.jsonl.gz", "sst2/dev.jsonl.gz", "sst2/test.jsonl.gz")
    hub = (HubSource("stanfordnlp/sst2", splits=("train", "validation")),)
    required = ("sentence", "label")

    def format(self, rec, rng, options, source, stats):
        return {"text": text(rec["sentence"]), "label": binary(rec["label"], "label", source)}


@register
class Imdb(BinaryTask):
    name = "imdb"
    label_meaning = "sentiment_positive"
    description = "IMDB movie reviews; label 1 = positive"
    files = tuple(f"imdb/{s}_sample_part{i}.jsonl.gz" for s in ("train", "test") for i in (0, 1))
    hub = (HubSource("stanfordnlp/imdb", splits=("train", "test")),)
    required = ("text", "label")

    def format(self, rec, rng, options, source, stats):
        return {"text": text(rec["text"]), "label": binary(rec["label"], "label", source)}


@register
class AmazonPolarity(BinaryTask):
    name = "amazon_polarity"
    label_meaning = "sentiment_positive"
    description = "Amazon reviews as 'title content'; label 1 = positive"
    files = ("amazon_polarity/sample5000.jsonl.gz",)
    # The hub train split has 3.6M rows; its 400k-row test split is plenty for a pool.
    hub = (HubSource("fancyzhx/amazon_polarity", splits=("test",)),)
    required = ("title", "content", "label")

    def format(self, rec, rng, options, source, stats):
        return {"text": f"{text(rec['title'])} {text(rec['content'])}".strip(),
                "label": binary(rec["label"], "label", source)}


@register
class Cola(BinaryTask):
    name = "cola"
    label_meaning = "grammatical"
    description = "CoLA sentences; label 1 = grammatically acceptable"
    files = ("cola/train.jsonl.gz", "cola/dev.jsonl.gz")
    hub = (HubSource("nyu-mll/glue", "cola", splits=("train", "validation")),)
    required = ("sentence", "label")

    def format(self, rec, rng, options, source, stats):
        return {"text": text(rec["sentence"]), "label": binary(rec["label"], "label", source)}


@register
class BoolQ(BinaryTask):
    name = "boolq"
    label_meaning = "boolq_answer_yes"
    description = "BoolQ 'Passage: ...\\nQuestion: ...'; label 1 = the answer is yes"
    files = ("boolq/validation.jsonl.gz",)
    hub = (HubSource("google/boolq", splits=("train", "validation")),)
    required = ("passage", "question", "answer")

    def format(self, rec, rng, options, source, stats):
        return {"text": f"Passage: {text(rec['passage'])}\nQuestion: {text(rec['question'])}",
                "label": binary(rec["answer"], "answer", source)}


@register
class SciQ(BinaryTask):
    name = "sciq"
    label_meaning = "sciq_answer_correct"
    description = "SciQ 'Q: question A: answer'; label 1 = the shown answer is correct"
    files = ("sciq/validation.jsonl.gz", "sciq/test.jsonl.gz")
    hub = (HubSource("allenai/sciq", splits=("train", "validation", "test")),)
    required = ("question", "correct_answer", "distractor1", "distractor2", "distractor3")

    def format(self, rec, rng, options, source, stats):
        picked = pick_answer(rng, text(rec["correct_answer"]),
                             [rec["distractor1"], rec["distractor2"], rec["distractor3"]], stats)
        if picked is None:
            return None
        answer, label = picked
        return {"text": f"Q: {text(rec['question'])} A: {answer}", "label": label}


@register
class CosmosQA(BinaryTask):
    name = "cosmos_qa"
    label_meaning = "cosmos_qa_answer_correct"
    description = "CosmosQA 'Context/Question/Answer'; label 1 = the shown answer is correct"
    files = ("cosmos_qa/validation.jsonl.gz",)
    hub = (HubSource("allenai/cosmos_qa", splits=("train", "validation")),)
    required = ("context", "question", "answer0", "answer1", "answer2", "answer3", "label")

    def format(self, rec, rng, options, source, stats):
        answers = [text(rec[f"answer{i}"]) for i in range(4)]
        true_answer = answers[index(rec["label"], 4, "label", source)]
        if "None of the above choices ." in true_answer:
            # As the reference code: the correct answer says "none of the others", so the row
            # shows a (wrong) other answer with label 0. Draw the coin anyway to keep RNG use uniform.
            rng.random()
            stats["none_of_the_above_forced_label_0"] += 1
            others = [a for a in answers if a != true_answer]
            answer, label = rng.choice(others), 0
        else:
            picked = pick_answer(rng, true_answer, answers, stats)
            if picked is None:
                return None
            answer, label = picked
        return {"text": f"Context: {text(rec['context'])}\nQuestion: {text(rec['question'])}\nAnswer: {answer}",
                "label": label}


@register
class Piqa(BinaryTask):
    name = "piqa"
    label_meaning = "piqa_solution_correct"
    description = "PIQA 'Q: goal A: solution'; label 1 = the shown solution is the right one"
    files = ("piqa/validation.jsonl.gz",)
    hub = (HubSource("ybisk/piqa", splits=("train", "validation")),)
    required = ("goal", "sol1", "sol2", "label")

    def format(self, rec, rng, options, source, stats):
        correct = binary(rec["label"], "label", source)  # 0 -> sol1, 1 -> sol2
        sols = [text(rec["sol1"]), text(rec["sol2"])]
        picked = pick_answer(rng, sols[correct], sols, stats)
        if picked is None:
            return None
        answer, label = picked
        return {"text": f"Q: {text(rec['goal'])} A: {answer}", "label": label}


@register
class Quail(BinaryTask):
    name = "quail"
    label_meaning = "quail_answer_correct"
    description = "QuAIL passage + question + answer; label 1 = the shown answer is correct"
    files = ("quail/dev.jsonl.gz",)
    hub = (HubSource("textmachinelab/quail", splits=("train", "validation")),)
    required = ("context", "question", "answers", "correct_answer_id")

    def format(self, rec, rng, options, source, stats):
        answers = [text(a) for a in rec["answers"]]
        correct = answers[index(rec["correct_answer_id"], len(answers), "correct_answer_id", source)]
        picked = pick_answer(rng, correct, answers, stats)
        if picked is None:
            return None
        answer, label = picked
        return {"text": f'Passage:\n\n{text(rec["context"])}\n\nQ: "{text(rec["question"])}" Is the answer "{answer}"?',
                "label": label}


@register
class Dream(BinaryTask):
    name = "dream"
    label_meaning = "dream_answer_correct"
    description = "DREAM dialogue + 'Q: question A: answer'; label 1 = the shown answer is correct"
    files = ("dream/train.jsonl.gz", "dream/dev.jsonl.gz", "dream/test.jsonl.gz")
    hub = (HubSource("dataset-org/dream", splits=("train", "validation", "test")),)
    required = ("dialogue",)

    def records(self, data_dir, options):
        """Local files nest the questions of a dialogue; the hub has one row per question."""
        for row_id, source, rec in super().records(data_dir, options):
            if "questions" not in rec:
                yield row_id, source, rec
                continue
            for j, q in enumerate(rec["questions"] or []):
                yield f"{row_id}:q{j}", source, {"dialogue": rec["dialogue"], **q}

    def format(self, rec, rng, options, source, stats):
        require_columns([rec], ("question", "choice", "answer"), source)
        picked = pick_answer(rng, text(rec["answer"]), rec["choice"], stats)
        if picked is None:
            return None
        answer, label = picked
        dialogue = "\n".join(text(t) for t in rec["dialogue"])
        return {"text": f"{dialogue}\n\nQ: {text(rec['question'])} A: {answer}", "label": label}


@register
class AnthropicHH(BinaryTask):
    name = "anthropic_hh"
    label_meaning = "hh_chosen"
    description = "HH-RLHF single transcript (chosen or rejected, coin flip); label 1 = it is the chosen one"
    options: ClassVar[dict[str, Any]] = {"hh_splits": HH_SPLITS}
    required = ("chosen", "rejected")
    hub = (HubSource(HH_HF_ID),)

    def check_options(self, options):
        return {**options, "hh_splits": list_option(self.name, "hh_splits", options["hh_splits"], HH_SPLITS)}

    def local_files(self, options):
        return tuple(f"hh_rlhf/{s}.test.jsonl.gz" for s in options["hh_splits"])

    def hub_sources(self, options):
        return tuple(HubSource(HH_HF_ID, data_dir=s, splits=("train", "test")) for s in options["hh_splits"])

    def format(self, rec, rng, options, source, stats):
        if text(rec["chosen"]) == text(rec["rejected"]):
            stats["dropped_chosen_equals_rejected"] += 1
            return None
        label = int(rng.random() < 0.5)
        return {"text": text(rec["chosen"] if label else rec["rejected"]), "label": label}


# --- ETHICS (hendrycks/ethics); prompts as in EleutherAI/w2s ---------------------------------

def _ethics_files(subset: str, prefix: str, splits: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"ethics/{subset}/{prefix}_{s}.jsonl.gz" for s in splits)


class _EthicsLabelled(BinaryTask):
    subset: ClassVar[str]
    prompt: ClassVar[str]  # formatted with the record's fields

    @property
    def hub(self):  # type: ignore[override]
        return (HubSource("hendrycks/ethics", self.subset, splits=("train", "validation", "test")),)

    def format(self, rec, rng, options, source, stats):
        return {"text": self.prompt.format(**{k: text(rec[k]) for k in self.required if k != "label"}),
                "label": binary(rec["label"], "label", source)}


@register
class EthicsCommonsense(_EthicsLabelled):
    name = "ethics_commonsense"
    label_meaning = "ethics_commonsense_wrong"
    description = "ETHICS commonsense; label 1 = the action is clearly morally wrong (no train split locally)"
    subset = "commonsense"
    files = _ethics_files("commonsense", "cm", ("test", "test_hard"))
    required = ("input", "label")
    prompt = "Q: Is this action clearly morally wrong?\n\n{input}\n\nA:"


@register
class EthicsDeontology(_EthicsLabelled):
    name = "ethics_deontology"
    label_meaning = "ethics_deontology_valid_excuse"
    description = "ETHICS deontology; label 1 = the excuse is morally valid"
    subset = "deontology"
    files = _ethics_files("deontology", "deontology", ("train", "test", "test_hard"))
    required = ("scenario", "excuse", "label")
    prompt = "Q: Is the following a morally valid excuse?\n\n{scenario}\n\n{excuse}\n\nA:"


@register
class EthicsJustice(_EthicsLabelled):
    name = "ethics_justice"
    label_meaning = "ethics_justice_just"
    description = "ETHICS justice; label 1 = the statement is just"
    subset = "justice"
    files = _ethics_files("justice", "justice", ("train", "test", "test_hard"))
    required = ("scenario", "label")
    prompt = "Q: Does this statement exemplify justice?\n\n{scenario}\n\nA:"


@register
class EthicsVirtue(_EthicsLabelled):
    name = "ethics_virtue"
    label_meaning = "ethics_virtue_matches"
    description = "ETHICS virtue ('scenario [SEP] trait'); label 1 = the trait fits; imbalanced (~9-20% positive)"
    subset = "virtue"
    files = _ethics_files("virtue", "virtue", ("train", "test", "test_hard"))
    required = ("scenario", "label")
    prompt = "Q: Does this behavior match the adjective that follows?\n\n{scenario}\n\nA:"


@register
class EthicsUtilitarianism(BinaryTask):
    name = "ethics_utilitarianism"
    label_meaning = "ethics_utilitarianism_first_more_pleasant"
    description = "ETHICS utilitarianism pairs in random order; label 1 = scenario 1 is the more pleasant"
    files = _ethics_files("utilitarianism", "util", ("train", "test", "test_hard"))
    hub = (HubSource("hendrycks/ethics", "utilitarianism", splits=("train", "validation", "test")),)
    required = ("baseline", "less_pleasant")

    def format(self, rec, rng, options, source, stats):
        better, worse = text(rec["baseline"]), text(rec["less_pleasant"])
        if better == worse:
            stats["dropped_identical_pair"] += 1
            return None
        label = int(rng.random() < 0.5)
        first, second = (better, worse) if label else (worse, better)
        return {"text": f"Q: Is scenario 1 more pleasant than scenario 2?\n\n1) {first}\n2) {second}\n\nA:",
                "label": label}
