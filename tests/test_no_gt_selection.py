"""Under ``--select-on weak`` every epoch reports the same no-GT score the final pick uses.

Trains one tiny student in-process with the search's own trial code; no Ray needed.
"""

from __future__ import annotations

import pytest

from tests.search_plan import tiny_plan
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.stages import Pipeline
from w2s_ray.search.driver import compute_shared, search_context
from w2s_ray.search.objective import epoch_objective
from w2s_ray.search.trainable import student_config, trial_metrics
from w2s_ray.train.executor import LocalExecutor, ScalingSpec


def test_each_epoch_reports_the_final_no_gt_score_terms(tmp_path, data_dir, model_cache):
    plan = tiny_plan(tmp_path, data_dir, "--select-on", "weak")
    executor = LocalExecutor()
    shared = compute_shared(plan, executor)
    ctx = search_context(plan, shared, ScalingSpec())
    pipe = Pipeline(plan.data, StageCache(plan.cache_uri), executor, val_labels=plan.args.val_labels)
    meta = {"select_on": "weak", "weak": shared.weak_val_acc, "ceiling": shared.ceiling_val_acc,
            "min_gap": ctx.min_gap, "gap_se": shared.gap_se, "gap_z": ctx.gap_z}
    pipe.objective_meta = meta
    cfg, _, policy, _ = student_config({"loss": "xent", "lr": 5e-4, "epochs": 2}, ctx)
    student = pipe.student(plan.strong, cfg, shared.weak, policy, weak=shared.weak)

    history = student.metrics["history"]
    assert len(history) == 2
    for epoch in history:  # the worker adds the predicted-class share and confidence to each epoch
        assert 0.5 <= epoch["val_major_share"] <= 1.0 and 0.0 <= epoch["val_confidence"] <= 1.0
    final = trial_metrics(ctx, student)
    assert final["objective"] == final["objective_weak"]
    # what ASHA saw at the last epoch is exactly the score the final pick ranks by
    assert epoch_objective(history[-1], meta) == pytest.approx(final["objective_weak"], abs=1e-12)
    assert final["student_major_share"] == pytest.approx(history[-1]["val_major_share"])
