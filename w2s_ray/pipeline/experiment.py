"""One weak-to-strong experiment end to end, on any executor: the run CLI and tests use it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from w2s_ray.analysis.metrics import GAP_Z
from w2s_ray.analysis.results import compare
from w2s_ray.config import DataConfig, TrainConfig, to_dict
from w2s_ray.errors import UserError
from w2s_ray.method import check_loss_params
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.crossfit import DEFAULT_FOLDS
from w2s_ray.pipeline.data import PreparedData, prepare_data
from w2s_ray.pipeline.stages import Pipeline
from w2s_ray.train.executor import Executor, LocalExecutor
from w2s_ray.weak_labels import WeakLabels


@dataclass
class ExperimentSpec:
    """Everything one weak → (bootstrap) → student / ceiling experiment needs."""

    data: DataConfig
    weak: str
    strong: str
    weak_cfg: TrainConfig
    ceiling_cfg: TrainConfig
    student_cfg: TrainConfig
    bootstrap: list[str] = field(default_factory=list)
    weak_labels: WeakLabels = field(default_factory=WeakLabels)
    bootstrap_folds: int = DEFAULT_FOLDS  # folds of B every link (and relabelling method) is cross-fitted over
    ood_tasks: list[str] = field(default_factory=list)
    val_labels: int | None = None
    min_gap: float = 0.02
    gap_z: float = GAP_Z


def check_mode_params(cfg: TrainConfig) -> None:
    """The training mode exists and its own numbers make sense (LoRA rank >= 1)."""
    from w2s_ray.config import TRAIN_MODES

    if cfg.mode not in TRAIN_MODES:
        raise UserError(f"unknown mode {cfg.mode!r}; available: {', '.join(TRAIN_MODES)}")
    if cfg.mode == "lora" and cfg.lora_r < 1:
        raise UserError(f"LoRA rank lora_r (--lora-r) must be >= 1 with mode lora, got {cfg.lora_r}")


def check_folds(folds: int, name: str = "--bootstrap-folds") -> None:
    """Cross-fitting needs at least two folds: with one, a model would label its own training rows."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise UserError(f"{name} must be an integer >= 2 (each fold is labelled by a model trained on the others), "
                        f"got {folds!r}")


def validate_spec(spec: ExperimentSpec) -> None:
    """Every check that can fail cheaply, before any training starts."""
    import math

    from w2s_ray.models import model_size, validate_model_spec
    from w2s_ray.tasks import get_task

    task = get_task(spec.data.task)
    for cfg in (spec.weak_cfg, spec.ceiling_cfg, spec.student_cfg):
        check_loss_params(cfg.loss, cfg.loss_params, task.kind)
        check_mode_params(cfg)
        if not cfg.lr > 0 or not math.isfinite(cfg.lr) or cfg.epochs < 1 or cfg.batch_size < 1 or cfg.max_length < 2:
            raise UserError(f"invalid training numbers: lr={cfg.lr} epochs={cfg.epochs} "
                            f"batch_size={cfg.batch_size} max_length={cfg.max_length}")
    for size_name, value in to_dict(spec.data.sizes).items():
        if value < 1:
            raise UserError(f"split size {size_name} must be >= 1, got {value}")
    spec.weak_labels.resolved()  # the method exists and takes each parameter, in its bounds
    check_folds(spec.bootstrap_folds, "bootstrap_folds")
    from w2s_ray.activations import feature_source

    for model, cfg in ((spec.weak, spec.weak_cfg), (spec.strong, spec.ceiling_cfg), (spec.strong, spec.student_cfg)):
        if cfg.mode == "probe":
            feature_source(model, cfg.layer)  # a layer the model does not have fails now, not after training
    ladder = [spec.weak, *spec.bootstrap, spec.strong]
    for model in ladder:
        validate_model_spec(model)
    sizes = [model_size(m) for m in ladder]
    for (small, a), (big, b) in zip(zip(ladder, sizes), zip(ladder[1:], sizes[1:])):
        if b < a:
            raise UserError(f"inconsistent model ladder: {big} ({b:,} params) is smaller than {small} ({a:,} params)")
    for ood in spec.ood_tasks:
        other = get_task(ood)
        if other.kind != task.kind or other.label_meaning != task.label_meaning:
            raise UserError(f"--ood-task {ood} does not share {task.name}'s label meaning "
                            f"({other.label_meaning!r} vs {task.label_meaning!r})")


def run_experiment(spec: ExperimentSpec, cache: StageCache, executor: Executor | None = None,
                   data: PreparedData | None = None) -> dict[str, Any]:
    """Weak, ceiling, optional bootstrap chain and student; returns the metrics report."""
    from w2s_ray.pipeline.chain import link_recipe, run_chain

    executor = executor or LocalExecutor()
    data = data or prepare_data(spec.data)
    pipe = Pipeline(data, cache, executor, val_labels=spec.val_labels)
    weak = pipe.weak(spec.weak, spec.weak_cfg)
    ceiling = pipe.ceiling(spec.strong, spec.ceiling_cfg)
    recipe = link_recipe(spec.ceiling_cfg, spec.weak, spec.weak_cfg.lr, spec.strong, spec.ceiling_cfg.lr,
                         spec.bootstrap_folds)
    chain = run_chain(pipe, spec.bootstrap, weak, recipe)
    links = chain.links
    source = links[-1] if links else weak
    student = pipe.student(spec.strong, spec.student_cfg, source, spec.weak_labels, weak=weak,
                           folds=spec.bootstrap_folds)
    report: dict[str, Any] = {
        "task": spec.data.task, "seed": spec.data.seed, "weak_model": spec.weak, "strong_model": spec.strong,
        "bootstrap": spec.bootstrap, "loss": spec.student_cfg.loss, "loss_params": dict(spec.student_cfg.loss_params),
        "student_cfg": to_dict(spec.student_cfg), "weak_cfg": to_dict(spec.weak_cfg),
        "ceiling_cfg": to_dict(spec.ceiling_cfg), "weak_labels": spec.weak_labels.describe(),
        "bootstrap_folds": spec.bootstrap_folds, "links": chain.selection,
        "sizes": to_dict(spec.data.sizes), "data_fingerprint": data.fingerprint,
        "stages": {"weak": weak.key, "ceiling": ceiling.key, "student": student.key,
                   **{f"bootstrap_{i}": link.key for i, link in enumerate(links, start=1)}},
        "val": compare(data, weak, student, ceiling, "val", spec.val_labels, spec.min_gap, spec.gap_z),
        "test": compare(data, weak, student, ceiling, "test", None, spec.min_gap, spec.gap_z),
        "ood": {},
    }
    for ood in spec.ood_tasks:
        models = {"weak": weak, "ceiling": ceiling, "student": student}
        report["ood"][ood] = evaluate_ood(spec, ood, cache, executor, models)
    return report


def evaluate_ood(spec: ExperimentSpec, ood_task: str, cache: StageCache, executor: Executor,
                 stages: dict) -> dict[str, Any]:
    """Accuracy and PGR of the trained weak, student and ceiling on another task's test split."""
    from w2s_ray.activations import SplitActivations
    from w2s_ray.analysis.metrics import accuracy, gap_standard_error, pgr
    from w2s_ray.pipeline.evaluate import predict_stage

    ood_data = prepare_data(replace(spec.data, task=ood_task, task_options={}))
    split = ood_data.splits["test"]
    accs, probs = {}, {}
    for name, stage in stages.items():
        features = None
        if stage.config.get("mode") == "probe":  # the OOD texts' activations, extracted once like any
            acts = SplitActivations(ood_data, cache.uri, stage.config["max_length"], stage.config["pooling"])
            features = acts.get(stage.model, stage.config.get("layer"), executor)["test"]
        probs[name] = predict_stage(stage, split, ood_data.kind, cache, tag=f"{ood_task}:{ood_data.fingerprint}",
                                    features=features)
        accs[f"{name}_acc"] = accuracy(probs[name], split.labels)
    gap_se = gap_standard_error(probs["weak"], probs["ceiling"], split.labels)
    gain = pgr(accs["weak_acc"], accs["student_acc"], accs["ceiling_acc"], min_gap=spec.min_gap,
               gap_se=gap_se, gap_z=spec.gap_z)
    return {**accs, "pgr": gain.value, "pgr_defined": gain.value is not None, "pgr_reason": gain.reason,
            "gap_se": gap_se, "n": len(split)}
