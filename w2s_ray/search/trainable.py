"""The Tune function trainable: one student training per trial, run by Ray Train.

Ray Train V2 no longer accepts a trainer inside ``Tuner``; each trial instead launches a
``TorchTrainer`` whose workers' per-epoch reports, with the objective added by the student's
epoch hook (:class:`~w2s_ray.search.objective.EpochObjective`), reach Tune via the
``TuneReportCallback`` given to the executor. The trial then reports its final validation
metrics (``final = 1``) once.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from w2s_ray.analysis.results import compare
from w2s_ray.method import StudentMethod, method_from_config
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.stage_pointer import write_pointer
from w2s_ray.pipeline.stages import Pipeline, StageResult
from w2s_ray.search.context import SearchContext, SharedStages
from w2s_ray.search.objective import EpochObjective, gt_objective, prediction_terms, weak_objective
from w2s_ray.train.executor import Executor, RayTrainExecutor


def student_config(config: dict[str, Any], ctx: SearchContext) -> StudentMethod:
    """A trial's config as a :class:`StudentMethod` on the search's student base (see ``w2s_ray.method``)."""
    return method_from_config(config, ctx.student_base, ctx.data.kind)


def label_source(shared: SharedStages, steps: int, folds: int) -> StageResult:
    """The weak model, or the last of ``steps`` links of the chain cross-fitted over ``folds``."""
    return shared.chains[folds][steps - 1] if steps else shared.weak


def trial_metrics(ctx: SearchContext, student: StageResult) -> dict[str, Any]:
    """Final validation metrics of one student and the searched objective."""
    shared = ctx.shared
    val = compare(ctx.data, shared.weak, student, shared.ceiling, "val", ctx.val_labels, ctx.min_gap, ctx.gap_z)
    objective, defined = gt_objective(val["student_acc"], shared.weak_val_acc, shared.ceiling_val_acc, ctx.min_gap,
                                      shared.gap_se, ctx.gap_z)
    student_val = student.probs("val")
    weak_score = weak_objective(student_val, shared.weak.probs("val"))
    return {
        "objective": objective if ctx.select_on == "gt" else weak_score,
        "objective_gt": objective,
        "objective_weak": weak_score,
        "pgr_defined": int(defined),
        "val_pgr": val["pgr"] if val["pgr"] is not None else float("nan"),
        "weak_val_acc": val["weak_acc"],
        "ceiling_val_acc": val["ceiling_acc"],
        "val_gap": val["gap"],
        "val_gap_se": val["gap_se"],
        "student_val_acc": val["student_acc"],
        "student_val_acc_vs_weak": val["student_acc_vs_weak"],
        "student_weak_agreement": val["student_weak_agreement"],
        "student_major_share": prediction_terms(student_val)["val_major_share"],
        "misfit_kl": val["misfit_kl"],
        "student_key": student.key,
        "student_checkpoint": str(student.path / "checkpoint"),
        "final": 1,
    }


def student_epoch_objective(ctx: SearchContext) -> EpochObjective:
    """What each of a trial's student epochs reports as ``objective`` (progress table, ASHA)."""
    shared = ctx.shared
    return EpochObjective(select_on=ctx.select_on, weak=shared.weak_val_acc, ceiling=shared.ceiling_val_acc,
                          min_gap=ctx.min_gap, gap_se=shared.gap_se, gap_z=ctx.gap_z)


def train_student(config: dict[str, Any], ctx: SearchContext, executor: Executor, trial_id: str) -> StageResult:
    """Train (or reuse from the cache) the student of one trial's config."""
    setup = student_config(config, ctx)
    shared = ctx.shared
    pipe = Pipeline(ctx.data, StageCache(ctx.cache_uri), executor, val_labels=ctx.val_labels,
                    trial_meta={"trial_id": trial_id}, activations=shared.activations)
    source = label_source(shared, setup.steps, setup.folds)
    return pipe.student(ctx.strong, setup.cfg, source, setup.weak_labels, weak=shared.weak, folds=setup.folds,
                        epoch_metrics=student_epoch_objective(ctx), reports_per_epoch=ctx.reports_per_epoch)


def student_trial(config: dict[str, Any], ctx: SearchContext) -> None:
    """Train (or reuse) this trial's student, then report its final metrics to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    # worker reports reach this trial; the callback (a queue actor) is made only if a Ray Train run
    # starts: a probe trial fits in-process and never needs it
    executor = RayTrainExecutor(ctx.train_storage, ctx.scaling, ctx.max_failures,
                                callbacks=lambda: [TuneReportCallback()],
                                checkpoint_interval_s=ctx.checkpoint_interval_s)
    student = train_student(config, ctx, executor, tune.get_context().get_trial_id())
    # the weights stay in the stage cache (their one copy); Tune and MLflow keep a pointer to them
    staging = write_pointer(Path(tempfile.mkdtemp(prefix="w2s-pointer-")), ctx.cache_uri, "student", student.key)
    try:
        tune.report(trial_metrics(ctx, student), checkpoint=tune.Checkpoint.from_directory(str(staging)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)

