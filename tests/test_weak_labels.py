"""Weak-label methods: a registry whose every entry trains a student, selectable from spaces and the CLI."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from tests.test_activations import probe_plan
from w2s_ray.errors import UserError
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.stages import Pipeline
from w2s_ray.search.driver import compute_shared, search_context
from w2s_ray.search.space import load_space
from w2s_ray.search.trainable import student_config
from w2s_ray.train.executor import LocalExecutor, ScalingSpec
from w2s_ray.weak_labels import WEAK_LABELS, LabelContext, WeakLabels, knn_labels


def test_every_registered_method_trains_a_student(tmp_path, data_dir, model_cache):
    """The contract: any method, at its defaults, turns the tiny-probe weak labels into a student."""
    plan = probe_plan(tmp_path, data_dir)
    shared = compute_shared(plan, LocalExecutor())
    cache = StageCache(plan.cache_uri)
    pipe = Pipeline(plan.data, cache, LocalExecutor(), activations=shared.activations)
    cfg = plan.student_base
    n = len(plan.data.splits["b"])
    keys = {}
    for name, method in WEAK_LABELS.items():
        weak_labels = WeakLabels(name)
        student = pipe.student(plan.strong, cfg, shared.weak, weak_labels, weak=shared.weak)
        assert 0.0 <= student.metrics["final"]["val_acc"] <= 1.0, name
        assert student.metrics["n_train"] <= n
        key = weak_labels.key(2)  # what the student's key holds: only this method's name and parameters
        if method.legacy is None:
            assert set(key) <= {"method", "params", "folds"} and key["method"] == name
            assert set(key["params"]) == set(method.params) and ("folds" in key) == method.crossfit
        keys[name] = student.key
    assert len(set(keys.values())) >= len(keys) - 1  # soft and hard may coincide only if the weak labels are 0/1
    s2s = [t for t in cache.trainings() if t["stage"] == "s2s"]
    assert len(s2s) == 2  # one iteration, cross-fitted over two folds


def test_methods_keep_filter_and_relabel_semantics():
    probs = np.array([0.9, 0.8, 0.1, 0.2, 0.6, 0.4, 0.95, 0.05])
    folds = np.array([0, 1] * 4)
    x = np.repeat(np.eye(2, dtype=np.float32), 4, axis=0)  # rows 0-3 and 4-7 are identical in features
    ctx = LabelContext(probs, "classify", folds, features=lambda: x)
    rows, targets = WeakLabels("knn_relabel", {"k": 2}).apply(ctx)
    # a row's label is the mean of its nearest rows in the OTHER fold: never its own weak label
    assert rows.tolist() == list(range(8))
    np.testing.assert_allclose(targets, knn_labels(x, probs, folds, 2))
    assert targets[0] == pytest.approx(np.mean([0.8, 0.2]))
    rows, targets = WeakLabels("knn_filter", {"k": 2, "contamination": 0.25}).apply(ctx)
    assert len(rows) == 6 and np.allclose(targets, probs[rows])  # the 25% most disagreeing rows dropped
    rows, _ = WeakLabels("confidence_filter", {"min_conf": 0.5}).apply(ctx)
    assert rows.tolist() == [0, 1, 2, 3, 6, 7]
    pairs = np.stack([x, -x], 1)  # pairwise: the features are the difference of the two texts'
    assert LabelContext(probs, "pairwise", folds, features=lambda: pairs).strong_features().shape == (8, 2)


def test_method_parameters_are_validated():
    with pytest.raises(UserError, match="has no parameter 'k'"):
        WeakLabels("logreg_relabel", {"k": 5}).resolved()
    with pytest.raises(UserError, match=r"contamination=1.0 is outside \[0, 1\)"):
        WeakLabels("knn_filter", {"contamination": 1.0}).resolved()
    with pytest.raises(UserError, match="must be an integer"):
        WeakLabels("s2s", {"s2s_iters": 1.5}).resolved()
    with pytest.raises(UserError, match="unknown weak-label method"):
        WeakLabels("magic").resolved()


SPACE = textwrap.dedent("""\
    params:
      lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true, default: 1.0e-2}
      loss: {type: categorical, choices: [xent]}
      weak_labels: {type: categorical, choices: [soft, knn_relabel, logreg_filter]}
      k: {type: int, low: 10, high: 100, when: {weak_labels: knn_relabel}}
      bootstrap_folds: {type: int, low: 2, high: 3}
    """)


def test_space_selects_methods_and_their_flat_params(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space(path, "classify")
    point = space.complete({"weak_labels": "knn_relabel"})
    assert point["k"] == 50 and point["bootstrap_folds"] == 2  # the registry's default, the default fold count
    for bad, needle in [
        ("{weak_labels: knn_relabel}", "{weak_labels: [knn_relabel, logreg_filter]}"),  # k under logreg_filter
        ("[soft, knn_relabel, logreg_filter]", "[soft, knn_relabel, magic]"),
        ("bootstrap_folds: {type: int, low: 2", "bootstrap_folds: {type: int, low: 1"),
    ]:
        path.write_text(SPACE.replace(bad, needle))
        with pytest.raises(UserError):
            load_space(path, "classify")
    path.write_text(SPACE + "  filter_min_conf: {type: float, low: 0.0, high: 0.3}\n")
    with pytest.raises(UserError, match="legacy weak-label knob"):
        load_space(path, "classify")


def test_trial_configs_map_to_methods(tmp_path, data_dir, model_cache):
    plan = probe_plan(tmp_path, data_dir)
    shared = compute_shared(plan, LocalExecutor())
    ctx = search_context(plan, shared, ScalingSpec())
    legacy = student_config({"weak_label_transform": "hard", "filter_min_conf": 0.2}, ctx)
    assert legacy.weak_labels == WeakLabels("confidence_filter", {"min_conf": 0.2, "harden": 1})
    assert student_config({"weak_label_transform": "hard"}, ctx).weak_labels == WeakLabels("hard")
    setup = student_config({"weak_labels": "knn_filter", "k": 20, "contamination": 0.2, "loss": "logconf",
                            "aux_coef": 0.5, "bootstrap_folds": 3}, ctx)
    assert setup.weak_labels == WeakLabels("knn_filter", {"k": 20, "contamination": 0.2}) and setup.folds == 3
    assert setup.train.loss_params == {"aux_coef": 0.5}  # the loss's parameter goes to the loss


def test_run_cli_takes_a_method_and_its_parameters():
    from w2s_ray.run import build_parser, weak_labels_from_args

    parse = build_parser().parse_args
    args = parse(["--task", "sst2", "--weak-labels", "knn_relabel", "--weak-label-param", "k=20"])
    assert weak_labels_from_args(args) == WeakLabels("knn_relabel", {"k": 20})
    assert weak_labels_from_args(parse(["--task", "sst2", "--filter-min-conf", "0.3"])) == \
        WeakLabels("confidence_filter", {"min_conf": 0.3, "harden": 0})
    with pytest.raises(UserError, match="not both"):
        weak_labels_from_args(parse(["--task", "sst2", "--weak-labels", "soft", "--weak-label-transform", "hard"]))
