"""The student method spec: every knob of the space's table reaches the student's training job.

A knob added to ``STUDENT_KNOBS`` that nothing turns into a stage setting fails at import
(``w2s_ray.method``); this contract test builds a spec from every name a space may search and
checks where each one lands: the TrainJob a student's training receives (training knobs and
loss parameters), the student's cache key (weak-label method and its parameters) or the chain
the labels come from (bootstrap knobs).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from w2s_ray.config import STUDENT_KNOBS, TrainConfig
from w2s_ray.errors import UserError
from w2s_ray.losses import LOSSES
from w2s_ray.method import CHAIN_KNOBS, LABEL_KNOBS, TRAIN_KNOBS, method_from_config
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.data import PreparedData, Split
from w2s_ray.pipeline.stages import Pipeline, StageResult
from w2s_ray.search.space.knobs import knob_table, registries
from w2s_ray.weak_labels import WEAK_LABELS

BASE = TrainConfig(lr=1e-3, epochs=1, batch_size=4, max_length=16)
# a non-default value per training knob (what a space could set)
TRAIN_VALUES = {"lr": 3e-4, "epochs": 3, "batch_size": 8, "mode": "lora", "lora_r": 4, "weight_decay": 0.05, "layer": 1}


class _Captured(Exception):
    pass


class CaptureExecutor:
    """Records the job a stage would train, then stops before any training."""

    def __init__(self) -> None:
        self.jobs: list = []

    def run(self, job, name: str) -> None:
        self.jobs.append(job)
        raise _Captured


def tiny_data() -> PreparedData:
    splits = {name: Split([f"{name}{i}" for i in range(8)], [f"text {name} {i}" for i in range(8)],
                          np.array([i % 2 for i in range(8)], dtype=np.float64)) for name in ("a", "b", "val", "test")}
    return PreparedData("sst2", "classify", "sentiment", splits, "fp")


def fake_weak(tmp_path, data: PreparedData) -> StageResult:
    path = tmp_path / "weak"
    (path / "predictions").mkdir(parents=True)
    for name in ("b", "val", "test"):
        probs = np.linspace(0.2, 0.8, len(data.splits[name]))
        pq.write_table(pa.table({"id": data.splits[name].ids, "prob": probs}), path / "predictions" / f"{name}.parquet")
    return StageResult("weak", "weakkey", path, "tiny-bert", {})


def student_job(tmp_path, config: dict):
    data = tiny_data()
    executor = CaptureExecutor()
    pipe = Pipeline(data, StageCache(tmp_path / "cache"), executor)
    method = method_from_config(config, BASE, "classify")
    with pytest.raises(_Captured):
        pipe.student("tiny-bert", method.train, fake_weak(tmp_path, data), method.weak_labels, folds=method.folds)
    return method, executor.jobs[-1]


def test_every_student_knob_has_exactly_one_owner():
    owners = [set(TRAIN_KNOBS) | {"loss"}, set(CHAIN_KNOBS), set(LABEL_KNOBS)]
    assert set().union(*owners) == set(STUDENT_KNOBS)
    assert sum(len(o) for o in owners) == len(STUDENT_KNOBS)
    assert set(TRAIN_VALUES) == set(TRAIN_KNOBS)  # a new training knob needs a value in this test


@pytest.mark.parametrize("knob", sorted(TRAIN_VALUES))
def test_each_training_knob_reaches_the_training_job(knob, tmp_path):
    config = {knob: TRAIN_VALUES[knob], **({"mode": "probe"} if knob == "layer" else {})}
    if knob == "layer":  # a probe fits in-process: its setting is in the stage's config
        method = method_from_config(config, BASE, "classify")
        assert method.train.layer == 1 and method.train.mode == "probe"
        return
    _, job = student_job(tmp_path, config)
    assert getattr(job.cfg, knob) == TRAIN_VALUES[knob]


@pytest.mark.parametrize("loss,param", sorted((name, p) for name, spec in LOSSES.items() if "classify" in spec.kinds
                                              for p in spec.params))
def test_each_loss_parameter_reaches_the_training_job(loss, param, tmp_path):
    default = LOSSES[loss].params[param]
    value = default / 2 if default else 0.3
    _, job = student_job(tmp_path, {"loss": loss, param: value})
    assert job.cfg.loss == loss and job.cfg.loss_params == {param: value}


@pytest.mark.parametrize("method,param", sorted((m, p) for m, spec in WEAK_LABELS.items() for p in spec.params))
def test_each_weak_label_parameter_changes_the_students_key(method, param):
    spec = WEAK_LABELS[method].params[param]
    other = spec.default + 1 if spec.integer else (spec.default + spec.low) / 2 or spec.low + 0.01
    a = method_from_config({"weak_labels": method}, BASE, "classify")
    b = method_from_config({"weak_labels": method, param: other}, BASE, "classify")
    assert b.weak_labels.params == {param: other}
    assert a.weak_labels.key(2) != b.weak_labels.key(2)


def test_chain_knobs_choose_the_label_source():
    method = method_from_config({"bootstrap_steps": 2, "bootstrap_folds": 3}, BASE, "classify")
    assert (method.bootstrap_steps, method.bootstrap_folds) == (2, 3)


def test_every_name_a_space_may_search_is_handled():
    """The space's knob table and the method spec agree: no name a space accepts is dropped."""
    table = knob_table(registries())
    for name, knob in table.items():
        if knob.owner is not None:
            assert knob.owner.knob in ("loss", "weak_labels"), name
        else:
            assert name in STUDENT_KNOBS, name


def test_a_parameter_of_another_loss_is_refused():
    with pytest.raises(UserError, match=r"loss 'xent' has no parameter 'aux_coef'.*logconf"):
        method_from_config({"loss": "xent", "aux_coef": 0.5}, BASE, "classify")
