"""Under ``--select-on weak`` every epoch reports the same no-GT score the final pick uses.

Trains one tiny student in-process with the search's own trial code; no Ray needed. The job goes
through pickle on its way to the worker, as it does to a Ray Train worker.
"""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from tests.search_plan import tiny_plan
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.stages import Pipeline
from w2s_ray.search.driver import compute_shared, search_context
from w2s_ray.search.objective import epoch_objective
from w2s_ray.search.trainable import student_config, student_epoch_objective, trial_metrics
from w2s_ray.train.executor import Job, LocalExecutor, ScalingSpec
from w2s_ray.train.job import TrainJob
from w2s_ray.train.worker import _LocalContext, run_job


class _ReportingExecutor:
    """Runs a training in-process from a pickled job and keeps its worker reports."""

    def __init__(self) -> None:
        self.reports: list[dict] = []

    def run(self, job: Job, name: str) -> None:
        assert isinstance(job, TrainJob)
        shipped = TrainJob.from_dict(pickle.loads(pickle.dumps(job.to_dict())))
        ctx = _LocalContext()
        run_job(shipped, ctx)
        self.reports.extend(ctx.reports)


def test_each_epoch_reports_the_final_no_gt_score_terms(tmp_path, data_dir, model_cache):
    plan = tiny_plan(tmp_path, data_dir, "--select-on", "weak")
    shared = compute_shared(plan, LocalExecutor())
    ctx = search_context(plan, shared, ScalingSpec())
    executor = _ReportingExecutor()
    pipe = Pipeline(plan.data, StageCache(plan.cache_uri), executor, val_labels=plan.settings.val_labels)
    hook = student_epoch_objective(ctx)
    assert hook.select_on == "weak"
    meta = dataclasses.asdict(hook)
    cfg, _, policy, _ = student_config({"loss": "xent", "lr": 5e-4, "epochs": 2}, ctx)
    student = pipe.student(plan.strong, cfg, shared.weak, policy, weak=shared.weak, epoch_metrics=hook)

    history = student.metrics["history"]
    assert len(history) == 2
    for epoch in history:  # the hook adds the predicted-class share and confidence to each epoch
        assert 0.5 <= epoch["val_major_share"] <= 1.0 and 0.0 <= epoch["val_confidence"] <= 1.0
    assert [r["epoch"] for r in executor.reports] == [1, 2]  # each epoch's report carries the objective
    for report, epoch in zip(executor.reports, history):
        assert report["objective"] == epoch_objective(epoch, meta)
    assert "objective" not in student.metrics["meta"]  # the hook is not the stage's metadata
    assert not {"val_major_share", "objective"} & set(shared.weak.metrics["history"][-1])  # no hook, no terms
    final = trial_metrics(ctx, student)
    assert final["objective"] == final["objective_weak"]
    # what ASHA saw at the last epoch is exactly the score the final pick ranks by
    assert epoch_objective(history[-1], meta) == pytest.approx(final["objective_weak"], abs=1e-12)
    assert final["student_major_share"] == pytest.approx(history[-1]["val_major_share"])



def test_half_epoch_rungs_report_twice_per_epoch_and_train_the_same_student(tmp_path, data_dir, model_cache):
    """``--asha --asha-grace-epochs 0.5``: each student reports mid-epoch too (no checkpoint), so
    ASHA's first rung falls after half an epoch; the stage key and the trained student are unchanged."""
    from w2s_ray.search.driver import asha_scheduler

    plan = tiny_plan(tmp_path, data_dir, "--asha", "--asha-grace-epochs", "0.5")
    assert plan.reports_per_epoch == 2
    scheduler = asha_scheduler(plan)
    # the tiny space trains 1 epoch: two reports, then the trial's final one; the first rung is report 1
    assert scheduler is not None and scheduler._max_t == 1 * 2 + 1
    assert min(milestone for milestone, _ in scheduler._brackets[0]._rungs) == 1
    shared = compute_shared(plan, LocalExecutor())
    ctx = search_context(plan, shared, ScalingSpec())
    assert ctx.reports_per_epoch == 2
    cfg, _, policy, _ = student_config({"loss": "xent", "lr": 5e-4, "epochs": 2}, ctx)
    runs = {}
    for k in (1, 2):
        executor = _ReportingExecutor()
        pipe = Pipeline(plan.data, StageCache(tmp_path / f"cache-{k}"), executor)
        student = pipe.student(plan.strong, cfg, shared.weak, policy, weak=shared.weak,
                               epoch_metrics=student_epoch_objective(ctx), reports_per_epoch=k)
        runs[k] = (student, executor.reports)
    (one, one_reports), (two, two_reports) = runs[1], runs[2]
    assert one.key == two.key  # the report cadence is not part of the stage key
    assert [r["epoch"] for r in one_reports] == [1, 2]
    assert [r.get("mid_epoch", 0) for r in two_reports] == [1, 0, 1, 0]
    assert [r["epoch"] for r in two_reports][1::2] == [1, 2] and 0 < two_reports[0]["epoch"] < 1
    assert all("objective" in r and "val_acc_gt" in r for r in two_reports)  # ASHA can rank at every rung
    assert len(two.metrics["history"]) == 2  # mid-epoch reports add no history entries
    assert one.probs("test").tolist() == two.probs("test").tolist()  # the same student
