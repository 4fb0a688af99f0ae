"""Cross-fitted bootstrapping: no model in the chain labels a row it was trained on."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from w2s_ray.config import DataConfig, SplitSizes, TrainConfig
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.crossfit import fold_ids, fold_split
from w2s_ray.pipeline.data import PreparedData, Split
from w2s_ray.pipeline.experiment import ExperimentSpec, run_experiment
from w2s_ray.pipeline.stages import Pipeline
from w2s_ray.train.executor import LocalExecutor

TINY = "tiny-bert"


def test_folds_are_balanced_seeded_and_disjoint():
    ids = fold_ids(41, 3, seed=7)
    assert np.array_equal(ids, fold_ids(41, 3, seed=7)) and not np.array_equal(ids, fold_ids(41, 3, seed=8))
    assert sorted(np.bincount(ids).tolist()) == [13, 14, 14]
    for fold in range(3):
        train, held = fold_split(ids, fold)
        assert not set(train) & set(held) and len(train) + len(held) == 41


class RecordingExecutor(LocalExecutor):
    """Runs in-process and keeps every job it was given, by cache key."""

    def __init__(self) -> None:
        self.jobs: dict[str, object] = {}

    def run(self, job, name: str) -> None:
        self.jobs[job.cache_key] = job
        super().run(job, name)


def test_no_link_labels_its_own_training_rows(tmp_path, data_dir, model_cache):
    base = TrainConfig(lr=1e-3, epochs=1, batch_size=16, max_length=32)
    data = DataConfig(task="sst2", data_dir=data_dir, sizes=SplitSizes(a=32, b=30, val=16, test=16))
    spec = ExperimentSpec(data=data,
                          weak=TINY, strong=TINY, weak_cfg=base, ceiling_cfg=base, student_cfg=base,
                          bootstrap=[TINY], bootstrap_folds=3)
    executor = RecordingExecutor()
    cache = StageCache(tmp_path)
    report = run_experiment(spec, cache, executor)
    [link_info] = report["links"]
    assert link_info["budget"] == 3 and link_info["folds"] == 3  # three learning rates, each cross-fitted
    link_dir = cache.get("bootstrap_1", report["stages"]["bootstrap_1"])
    folds = json.loads((link_dir / "checkpoint" / "folds.json").read_text())["folds"]
    assert len(folds) == 3
    from w2s_ray.pipeline.data import prepare_data

    b = prepare_data(spec.data).splits["b"]
    ids = fold_ids(len(b), 3, base.seed)
    import pyarrow.parquet as pq

    labels = pq.read_table(link_dir / "predictions" / "b.parquet")["prob"].to_numpy()
    labelled = []
    for entry in folds:
        job = executor.jobs[entry["key"]]  # what this fold's training job got
        held = np.flatnonzero(ids == entry["fold"])
        assert not {b.inputs[i] for i in held} & set(job.train_inputs)  # never trained on what it labels
        assert len(job.train_inputs) == len(b) - len(held)
        fold_probs = pq.read_table(cache.get("bootstrap_1", entry["key"]) / "predictions" / "b.parquet")["prob"]
        np.testing.assert_allclose(labels[held], fold_probs.to_numpy()[held])  # the link's labels are its own
        labelled += held.tolist()
    assert sorted(labelled) == list(range(len(b)))  # every row of B labelled exactly once


# ---------------------------------------------------------------------------------------------
# A synthetic task: a few informative features plus one feature per row (a model can memorise
# every training label). Weak labels are the truth with 30% flipped at random.


@dataclass
class FixedFeatures:
    """Stands in for SplitActivations: fixed features per split."""

    feats: dict[str, np.ndarray]
    max_length: int = 32
    pooling: str = "auto"

    def get(self, spec, layer, executor=None) -> dict[str, np.ndarray]:
        return self.feats


@dataclass
class FixedLabels:
    """Stands in for the weak model's stage: its labels on B."""

    b: np.ndarray
    key: str = "flipped-weak-labels"

    def probs(self, split: str) -> np.ndarray:
        return self.b


def synthetic(n: int = 200, seed: int = 0) -> tuple[PreparedData, FixedFeatures, np.ndarray]:
    rng = np.random.default_rng(seed)
    splits, feats = {}, {}
    for name, rows in (("a", 8), ("b", n), ("val", 100), ("test", 100)):
        y = (rng.random(rows) < 0.5).astype(np.float64)
        signal = rng.normal(size=(rows, 4)) + (2 * y[:, None] - 1)
        own = np.eye(rows, n) if name == "b" else np.zeros((rows, n))  # B's rows each get a feature of their own
        feats[name] = np.concatenate([signal, own], 1).astype(np.float32)
        splits[name] = Split([f"{name}{i}" for i in range(rows)], [f"{name} text {i}" for i in range(rows)], y)
    data = PreparedData("synthetic", "classify", "label", splits, f"synthetic-{seed}")
    truth = splits["b"].labels
    flipped = np.where(rng.random(n) < 0.3, 1 - truth, truth)
    return data, FixedFeatures(feats), flipped


@pytest.mark.parametrize("seed", [0, 1])
def test_cross_fitting_recovers_accuracy_that_self_labelling_does_not(tmp_path, model_cache, seed):
    data, feats, flipped = synthetic(seed=seed)
    pipe = Pipeline(data, StageCache(tmp_path), LocalExecutor(), activations=feats)
    cfg = TrainConfig(mode="probe", lr=3e-2, epochs=30, batch_size=32, max_length=32, weight_decay=0.1)
    weak_acc = float(((flipped > 0.5) == data.splits["b"].labels).mean())
    self_labelled = pipe.link(1, TINY, cfg, FixedLabels(flipped), folds=1).metrics["final"]["b_acc"]
    cross_fitted = pipe.link(1, TINY, cfg, FixedLabels(flipped), folds=2).metrics["final"]["b_acc"]
    assert abs(self_labelled - weak_acc) < 0.03  # it memorised its training labels: the flips come back
    assert cross_fitted > weak_acc + 0.05  # held-out labels follow the signal, not the flips
