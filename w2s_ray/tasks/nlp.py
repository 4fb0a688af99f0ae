"""Binary NLP tasks in the weak-to-strong paper's binary format, where formatting needs code.

The plain text + label tasks (sst2, imdb, amazon_polarity, cola, boolq) are YAML files in
`yaml/` (see `spec.py`).

Formats follow openai/weak-to-strong `weak_to_strong/datasets.py` (sciq, boolq, cosmos_qa,
amazon_polarity, anthropic_hh) and EleutherAI/w2s `w2s/ds_registry.py` (sst2, cola, dream,
piqa, quail, ethics).

Multiple-choice data (sciq, cosmos_qa, piqa, quail, dream) and HH transcripts (anthropic_hh)
become binary with two rows per question, not the reference code's coin flip: the question
with its correct answer (label 1, id suffix `:correct`) and with one distractor (label 0,
`:distractor`; drawn from the record's seeded RNG, see `base.py`), both in one `group`. So
classes are balanced by construction rather than by luck, and a split never holds one answer
of a question whose other answer is in another split. The cost: a split of n rows covers
about n/2 questions. cosmos_qa questions whose correct answer is "None of the above" keep the
reference code's single label-0 row (the answer means nothing without the other options).

`group` (see `base.py`) names what rows share: the passage/context/dialogue/goal/question a
task shows, or for ETHICS the scenario. `splits.py` keeps rows sharing any of it in one split
and balances the classes of every split.

Local files hold only the splits listed in `../shared/data/SOURCES.md`; all of a task's files
are pooled (see `splits.py` for why that is safe).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from w2s_ray.errors import UserError
from w2s_ray.tasks.base import RecordTask, binary, group_key, list_option
from w2s_ray.tasks.hub import HubSource
from w2s_ray.tasks.local import Record, require_columns
from w2s_ray.tasks.registry import register
from w2s_ray.tasks.spec import hh_prompt, text  # also used by rm.py

HH_SPLITS: tuple[str, ...] = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
HH_HF_ID = "Anthropic/hh-rlhf"


def index(value: Any, n: int, column: str, source: str) -> int:
    """An answer index in [0, n); UserError naming the column and file otherwise."""
    try:
        i = int(value)
    except (TypeError, ValueError):
        i = -1
    if not 0 <= i < n or isinstance(value, bool):
        raise UserError(f"column {column!r} in {source} has value {value!r}; expected an index 0-{n - 1}")
    return i


Row = dict[str, Any]


def answer_rows(rng: random.Random, correct: str, candidates: Sequence[Any], render: Callable[[str], str],
                group: str, stats: Counter[str]) -> list[Row] | None:
    """A question's two rows: `render(correct)` (label 1) and `render(distractor)` (label 0).

    The distractor is drawn by `rng` from the candidates, never one equal to the correct
    answer. Both rows carry `group`. A record with no distractor is dropped (None).
    """
    distractors = list(dict.fromkeys(text(c) for c in candidates if text(c).strip() and text(c) != correct))
    if not distractors:
        stats["dropped_no_distractor"] += 1
        return None
    return [{"variant": "correct", "text": render(correct), "label": 1, "group": group},
            {"variant": "distractor", "text": render(rng.choice(distractors)), "label": 0, "group": group}]


class BinaryTask(RecordTask):
    kind = "classify"
    options: dict[str, Any] = {}  # noqa: RUF012 (a default; SpecTask sets its own)


@register
class SciQ(BinaryTask):
    name = "sciq"
    label_meaning = "sciq_answer_correct"
    description = "SciQ 'Q: question A: answer'; label 1 = the shown answer is correct"
    files = ("sciq/validation.jsonl.gz", "sciq/test.jsonl.gz")
    hub = (HubSource("allenai/sciq", splits=("train", "validation", "test")),)
    required = ("question", "correct_answer", "distractor1", "distractor2", "distractor3")

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> list[Row] | None:
        question = text(rec["question"])
        return answer_rows(rng, text(rec["correct_answer"]), [rec[f"distractor{i}"] for i in (1, 2, 3)],
                           lambda answer: f"Q: {question} A: {answer}", group_key(question), stats)


@register
class CosmosQA(BinaryTask):
    name = "cosmos_qa"
    label_meaning = "cosmos_qa_answer_correct"
    description = "CosmosQA 'Context/Question/Answer'; label 1 = the shown answer is correct"
    files = ("cosmos_qa/validation.jsonl.gz",)
    hub = (HubSource("allenai/cosmos_qa", splits=("train", "validation")),)
    required = ("context", "question", "answer0", "answer1", "answer2", "answer3", "label")

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> list[Row] | None:
        answers = [text(rec[f"answer{i}"]) for i in range(4)]
        true_answer = answers[index(rec["label"], 4, "label", source)]
        prefix = f"Context: {text(rec['context'])}\nQuestion: {text(rec['question'])}\nAnswer: "
        group = group_key(rec["context"])  # questions ("What is probably true about the narrator?") repeat
        if "None of the above choices ." in true_answer:
            # As the reference code: the correct answer says "none of the others", so only a
            # (wrong) other answer is shown, with label 0.
            stats["none_of_the_above_only_label_0"] += 1
            others = [a for a in answers if a != true_answer]
            return [{"variant": "distractor", "text": prefix + rng.choice(others), "label": 0, "group": group}]
        return answer_rows(rng, true_answer, answers, lambda answer: prefix + answer, group, stats)


@register
class Piqa(BinaryTask):
    name = "piqa"
    label_meaning = "piqa_solution_correct"
    description = "PIQA 'Q: goal A: solution'; label 1 = the shown solution is the right one"
    files = ("piqa/validation.jsonl.gz",)
    hub = (HubSource("ybisk/piqa", splits=("train", "validation")),)
    required = ("goal", "sol1", "sol2", "label")

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> list[Row] | None:
        correct = binary(rec["label"], "label", source)  # 0 -> sol1, 1 -> sol2
        sols = [text(rec["sol1"]), text(rec["sol2"])]
        goal = text(rec["goal"])
        return answer_rows(rng, sols[correct], sols, lambda answer: f"Q: {goal} A: {answer}",
                           group_key(goal), stats)


@register
class Quail(BinaryTask):
    name = "quail"
    label_meaning = "quail_answer_correct"
    description = "QuAIL passage + question + answer; label 1 = the shown answer is correct"
    files = ("quail/dev.jsonl.gz",)
    hub = (HubSource("textmachinelab/quail", splits=("train", "validation")),)
    required = ("context", "question", "answers", "correct_answer_id")

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> list[Row] | None:
        answers = [text(a) for a in rec["answers"]]
        correct = answers[index(rec["correct_answer_id"], len(answers), "correct_answer_id", source)]
        prefix = f'Passage:\n\n{text(rec["context"])}\n\nQ: "{text(rec["question"])}" Is the answer "'
        return answer_rows(rng, correct, answers, lambda answer: f'{prefix}{answer}"?',
                           group_key(rec["context"]), stats)


@register
class Dream(BinaryTask):
    name = "dream"
    label_meaning = "dream_answer_correct"
    description = "DREAM dialogue + 'Q: question A: answer'; label 1 = the shown answer is correct"
    files = ("dream/train.jsonl.gz", "dream/dev.jsonl.gz", "dream/test.jsonl.gz")
    hub = (HubSource("dataset-org/dream", splits=("train", "validation", "test")),)
    required = ("dialogue",)

    def records(self, data_dir: str | None, options: dict[str, Any]) -> Iterator[tuple[str, str, Record]]:
        """Local files nest the questions of a dialogue; the hub has one row per question."""
        for row_id, source, rec in super().records(data_dir, options):
            if "questions" not in rec:
                yield row_id, source, rec
                continue
            for j, q in enumerate(rec["questions"] or []):
                yield f"{row_id}:q{j}", source, {"dialogue": rec["dialogue"], **q}

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> list[Row] | None:
        require_columns([rec], ("question", "choice", "answer"), source)
        dialogue = "\n".join(text(t) for t in rec["dialogue"])
        prefix = f"{dialogue}\n\nQ: {text(rec['question'])} A: "
        return answer_rows(rng, text(rec["answer"]), rec["choice"], lambda answer: prefix + answer,
                           group_key(dialogue), stats)


@register
class AnthropicHH(BinaryTask):
    name = "anthropic_hh"
    label_meaning = "hh_chosen"
    description = "HH-RLHF single transcript (chosen and rejected rows per pair); label 1 = it is the chosen one"
    options: dict[str, Any] = {"hh_splits": HH_SPLITS}  # noqa: RUF012 (a default; SpecTask sets its own)
    required = ("chosen", "rejected")
    hub = (HubSource(HH_HF_ID),)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**options, "hh_splits": list_option(self.name, "hh_splits", options["hh_splits"], HH_SPLITS)}

    def local_files(self, options: dict[str, Any]) -> tuple[str, ...]:
        return tuple(f"hh_rlhf/{s}.test.jsonl.gz" for s in options["hh_splits"])

    def hub_sources(self, options: dict[str, Any]) -> tuple[HubSource, ...]:
        return tuple(HubSource(HH_HF_ID, data_dir=s, splits=("train", "test")) for s in options["hh_splits"])

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> list[Row] | None:
        chosen, rejected = text(rec["chosen"]), text(rec["rejected"])
        if chosen == rejected:
            stats["dropped_chosen_equals_rejected"] += 1
            return None
        group = group_key(hh_prompt(chosen), hh_prompt(rejected))
        return [{"variant": "chosen", "text": chosen, "label": 1, "group": group},
                {"variant": "rejected", "text": rejected, "label": 0, "group": group}]


# --- ETHICS (hendrycks/ethics); prompts as in EleutherAI/w2s ---------------------------------

def _ethics_files(subset: str, prefix: str, splits: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"ethics/{subset}/{prefix}_{s}.jsonl.gz" for s in splits)


class _EthicsLabelled(BinaryTask):
    subset: ClassVar[str]
    prompt: ClassVar[str]  # formatted with the record's fields

    @property
    def hub(self) -> tuple[HubSource, ...]:  # type: ignore[override]
        return (HubSource("hendrycks/ethics", self.subset, splits=("train", "validation", "test")),)

    def group_of(self, rec: dict[str, Any]) -> str:
        """What this record shares with others ('' if only its text)."""
        return ""

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> Row:
        row = {"text": self.prompt.format(**{k: text(rec[k]) for k in self.required if k != "label"}),
               "label": binary(rec["label"], "label", source)}
        group = self.group_of(rec)
        return {**row, "group": group} if group else row


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

    def group_of(self, rec: dict[str, Any]) -> str:
        return group_key(rec["scenario"])  # one scenario, several excuses


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

    def group_of(self, rec: dict[str, Any]) -> str:
        return group_key(text(rec["scenario"]).split(" [SEP] ")[0])  # one scenario, 5+ traits


@register
class EthicsUtilitarianism(BinaryTask):
    name = "ethics_utilitarianism"
    label_meaning = "ethics_utilitarianism_first_more_pleasant"
    description = "ETHICS utilitarianism pairs in random order; label 1 = scenario 1 is the more pleasant"
    files = _ethics_files("utilitarianism", "util", ("train", "test", "test_hard"))
    hub = (HubSource("hendrycks/ethics", "utilitarianism", splits=("train", "validation", "test")),)
    required = ("baseline", "less_pleasant")

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> Row | None:
        better, worse = text(rec["baseline"]), text(rec["less_pleasant"])
        if better == worse:
            stats["dropped_identical_pair"] += 1
            return None
        label = int(rng.random() < 0.5)
        first, second = (better, worse) if label else (worse, better)
        return {"text": f"Q: Is scenario 1 more pleasant than scenario 2?\n\n1) {first}\n2) {second}\n\nA:",
                "label": label, "group": group_key(better, worse)}  # scenarios recur across pairs
