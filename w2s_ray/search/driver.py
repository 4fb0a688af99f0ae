"""The search driver: validate everything, compute shared stages once, run Tune, report.

Order matters for users: every check that can fail on bad input runs before Ray starts,
before an MLflow run is created and before any training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from w2s_ray.cache import StageCache
from w2s_ray.cli_common import key_values, positive, split_sizes
from w2s_ray.config import DataConfig, TrainConfig, to_dict
from w2s_ray.data import PreparedData, prepare_data
from w2s_ray.errors import UserError
from w2s_ray.search.presets import Preset, get_preset
from w2s_ray.search.space import SearchSpace, default_space_path, load_space
from w2s_ray.search.storage import check_writable, is_remote, normalize
from w2s_ray.train.executor import Executor, ScalingSpec

TRIAL_CPU = 0.01  # a trial's own process only launches a TorchTrainer and waits
FORWARDED_ENV = ("W2S_FAULT_DIR", "W2S_DATA_DIR", "W2S_MODEL_CACHE", "HF_HUB_OFFLINE", "HF_HOME",
                 "MLFLOW_TRACKING_URI", "TRANSFORMERS_OFFLINE")


@dataclass
class SearchPlan:
    """A fully validated search, ready to run."""

    args: argparse.Namespace
    task: str
    kind: str
    preset: Preset
    space: SearchSpace
    data_cfg: DataConfig
    weak: str
    strong: str
    ladder: list[str]
    max_bootstrap: int
    storage: str
    name: str
    cache_uri: str
    tracking_uri: str
    experiment: str
    num_samples: int
    student_base: TrainConfig
    reference_base: TrainConfig
    data: PreparedData | None = None

    @property
    def exp_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def train_storage(self) -> str:
        return f"{self.exp_path}/train_runs"


def plan_search(args: argparse.Namespace) -> SearchPlan:
    """All input validation; raises UserError (exit 2) before anything costly starts."""
    from w2s_ray.losses import LOSS_DEFAULT
    from w2s_ray.models import model_size, validate_model_spec
    from w2s_ray.search.cli import check_search_args
    from w2s_ray.tasks import get_task, resolve_data_dir
    from w2s_ray.tracking import check_tracking_uri, resolve_tracking_uri

    task = get_task(args.task)
    preset = get_preset(args.preset or ("paper" if args.use_gpu else "quick"))
    check_search_args(args)
    if args.num_samples is not None and args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {args.num_samples}")
    positive("--max-concurrent", args.max_concurrent); positive("--num-workers", args.num_workers)
    positive("--min-gap", args.min_gap, allow_zero=True); positive("--val-labels", args.val_labels)
    positive("--gap-z", args.gap_z, allow_zero=True)
    positive("--confirm-seeds", args.confirm_seeds, allow_zero=True)
    positive("--max-failures", args.max_failures, allow_zero=True)
    space_path = Path(args.space) if args.space else default_space_path(task.name, task.kind)
    space = load_space(space_path, kind=task.kind, task=task.name)
    # CLI > an explicitly chosen preset > the space file > the default preset
    weak = args.weak or (preset.weak if args.preset else space.weak or preset.weak)
    strong = args.strong or (preset.strong if args.preset else space.strong or preset.strong)
    ladder = list(preset.ladder) if preset.ladder is not None else list(space.ladder)
    if preset.name == "tiny":
        ladder = [weak] * len(space.ladder)
    max_bootstrap = min(space.max_bootstrap_steps(), len(ladder))
    chain = [weak, *ladder[:max_bootstrap], strong]
    for model in dict.fromkeys(chain):
        validate_model_spec(model)
    sizes = [model_size(m) for m in chain]
    for (small, a), (big, b) in zip(zip(chain, sizes), zip(chain[1:], sizes[1:])):
        if b < a:
            raise UserError(f"inconsistent model ladder: {big} ({b:,} params) is smaller than {small} ({a:,} params)")
    storage = normalize(args.storage)
    check_writable(storage)
    tracking_uri = resolve_tracking_uri(args.tracking_uri, Path.cwd())
    check_tracking_uri(tracking_uri)
    data_cfg = DataConfig(task=task.name, data_dir=resolve_data_dir(args.data_dir),
                          sizes=split_sizes(args, preset.sizes_for(task.kind)), seed=args.seed, balance=args.balance,
                          task_options=key_values(args.task_option, "--task-option"))
    base = TrainConfig(batch_size=preset.batch_size, max_length=preset.max_length, seed=args.seed,
                       loss=LOSS_DEFAULT[task.kind])
    name = args.name or f"{task.name}-{preset.name}-s{args.seed}"
    plan = SearchPlan(
        args=args, task=task.name, kind=task.kind, preset=preset, space=space, data_cfg=data_cfg,
        weak=weak, strong=strong, ladder=ladder, max_bootstrap=max_bootstrap, storage=storage, name=name,
        cache_uri=normalize(args.cache_dir) if args.cache_dir else f"{storage.rstrip('/')}/cache",
        tracking_uri=tracking_uri, experiment=args.experiment or f"w2s-{task.name}",
        num_samples=args.num_samples or preset.num_samples,
        student_base=base, reference_base=base.replace(epochs=preset.reference_epochs),
    )
    if args.resume and not _can_restore(plan):
        raise UserError(f"--resume: no search named {name!r} under {storage} to resume")
    plan.data = prepare_data(data_cfg)  # missing/corrupt/single-class data fails here
    return plan


def _can_restore(plan: SearchPlan) -> bool:
    from ray import tune

    if not is_remote(plan.exp_path) and not Path(plan.exp_path).exists():
        return False
    try:
        return tune.Tuner.can_restore(plan.exp_path)
    except Exception:  # noqa: BLE001
        return False


def init_ray(plan: SearchPlan) -> None:
    import ray

    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    # a worker group waiting behind other trials (or an autoscaling node) is not a failure
    env.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S",
                   os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "900"))
    runtime_env = {"env_vars": env}
    if plan.args.address:
        ray.init(address=plan.args.address, runtime_env=runtime_env, log_to_driver=True)
    else:
        from w2s_ray.search.worker_logs import SETUP_HOOK

        ray.init(include_dashboard=False, runtime_env={**runtime_env, "worker_process_setup_hook": SETUP_HOOK})


def scaling_for(plan: SearchPlan) -> ScalingSpec:
    import ray

    args = plan.args
    use_gpu = bool(args.use_gpu if args.use_gpu is not None else plan.preset.use_gpu)
    cpus = args.cpus_per_worker
    if cpus is None:
        total = ray.cluster_resources().get("CPU", 1)
        # each trial's driver holds TRIAL_CPU; the Train workers get the rest (fractions are fine)
        share = (total - TRIAL_CPU * args.max_concurrent) / max(1, args.max_concurrent * args.num_workers)
        cpus = max(0.5, math.floor(share * 100) / 100)
    return ScalingSpec(num_workers=args.num_workers, use_gpu=use_gpu, cpus_per_worker=cpus,
                       gpus_per_worker=args.gpus_per_worker)


def compute_shared(plan: SearchPlan, executor: Executor):
    """Weak and ceiling (each with its own lr selection on GT validation) and bootstrap links.

    ``executor`` runs each training: a ``RayTrainExecutor`` in a search, any executor in tests.
    """
    import numpy as np

    from w2s_ray.search.context import SharedStages
    from w2s_ray.stages import Pipeline, labelled_val
    from w2s_ray.metrics import accuracy, gap_standard_error

    pipe = Pipeline(plan.data, StageCache(plan.cache_uri), executor, val_labels=plan.args.val_labels)
    weak, weak_choice, weak_table = pipe.select("weak", plan.weak, plan.reference_base, plan.preset.weak_grid)
    ceiling, ceil_choice, ceil_table = pipe.select("ceiling", plan.strong, plan.reference_base,
                                                   plan.preset.ceiling_grid)
    link_cfg = plan.reference_base.replace(lr=plan.preset.bootstrap_lr)
    links = pipe.bootstrap(plan.ladder[: plan.max_bootstrap], link_cfg, weak) if plan.max_bootstrap else []
    val = labelled_val(plan.data.splits["val"].labels, plan.args.val_labels)
    known = ~np.isnan(val)
    return SharedStages(
        weak=weak, ceiling=ceiling, links=links,
        weak_val_acc=accuracy(weak.probs("val")[known], val[known]),
        ceiling_val_acc=accuracy(ceiling.probs("val")[known], val[known]),
        gap_se=gap_standard_error(weak.probs("val")[known], ceiling.probs("val")[known], val[known]),
        selection={"weak": {"model": plan.weak, "chosen": weak_choice, "candidates": weak_table},
                   "ceiling": {"model": plan.strong, "chosen": ceil_choice, "candidates": ceil_table},
                   "bootstrap": [{"model": l.model, "key": l.key, "test_acc": l.metrics["final"].get("test_acc")}
                                 for l in links]},
    )


def search_context(plan: SearchPlan, shared, scaling: ScalingSpec):
    """What every trial receives: the data, the shared stages and the student settings."""
    from w2s_ray.search.context import SearchContext

    return SearchContext(
        data=plan.data, shared=shared, cache_uri=plan.cache_uri, train_storage=plan.train_storage,
        strong=plan.strong, student_base=plan.student_base, scaling=scaling,
        max_failures=plan.args.max_failures, val_labels=plan.args.val_labels, min_gap=plan.args.min_gap,
        select_on=plan.args.select_on, gap_z=plan.args.gap_z,
    )


def make_tuner(plan: SearchPlan, ctx, callbacks: list):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from w2s_ray.search.searcher import make_searcher
    from w2s_ray.search.trainable import student_trial

    trainable = tune.with_resources(tune.with_parameters(student_trial, ctx=ctx), {"CPU": TRIAL_CPU})
    if _can_restore(plan):
        print(f"resuming search {plan.name} from {plan.exp_path}")
        return tune.Tuner.restore(plan.exp_path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  )
    scheduler = None
    if plan.args.asha:
        epochs = plan.space.params.get("epochs")
        max_t = int(epochs.high if epochs and epochs.type != "fixed" else (epochs.value if epochs else 2)) + 1
        scheduler = ASHAScheduler(metric="objective", mode="max", time_attr="training_iteration",
                                  max_t=max_t, grace_period=1)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=make_searcher(plan.space, plan.args.seed, plan.args.max_concurrent),
                                    scheduler=scheduler, num_samples=plan.num_samples,
                                    max_concurrent_trials=plan.args.max_concurrent),
        run_config=tune.RunConfig(name=plan.name, storage_path=plan.storage, callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=plan.args.max_failures),
                                  verbose=1),
    )


def run_search(plan: SearchPlan) -> dict[str, Any]:
    """Run a validated plan end to end; returns the summary written to storage."""
    import ray

    from w2s_ray.search.outputs import confirm_seeds, summarize_search, write_outputs
    from w2s_ray.tracking import SearchTracker
    from w2s_ray.train.executor import RayTrainExecutor

    init_ray(plan)
    try:
        tracker = SearchTracker(plan.tracking_uri, plan.experiment, plan.name, plan.exp_path)
        tracker.start(params=_search_params(plan), tags=_search_tags(plan))
        scaling = scaling_for(plan)
        executor = RayTrainExecutor(plan.train_storage, scaling, plan.args.max_failures)
        shared = compute_shared(plan, executor)
        _log_stages(tracker, shared)
        ctx = search_context(plan, shared, scaling)
        callback = tracker.callback(checkpoints=plan.args.checkpoints)
        from w2s_ray.search.fault_hooks import fault_callbacks  # test hooks only when W2S_FAULT_DIR is set
        grid = make_tuner(plan, ctx, [callback, *fault_callbacks()]).fit()
        summary = summarize_search(plan, ctx, grid)
        if plan.args.confirm_seeds:
            summary["confirm"] = confirm_seeds(plan, ctx, summary, executor)
        outputs = write_outputs(plan, summary, grid)
        unlogged = tracker.finish(summary=summary["final_metrics"], best_config=summary["best_config"],
                                  artifacts={"outputs": outputs})
        if not unlogged.ok:
            print(f"warning: some MLflow writes could not be made; see {tracker.unlogged_path}")
        return summary
    finally:
        ray.shutdown()


def _search_params(plan: SearchPlan) -> dict[str, Any]:
    return {"task": plan.task, "preset": plan.preset.name, "space": str(plan.space.path), "weak": plan.weak,
            "strong": plan.strong, "ladder": ",".join(plan.ladder), "num_samples": plan.num_samples,
            "seed": plan.args.seed, "select_on": plan.args.select_on, "val_labels": plan.args.val_labels,
            "sizes": json.dumps(to_dict(plan.data_cfg.sizes)), "min_gap": plan.args.min_gap,
            "gap_z": plan.args.gap_z}


def _search_tags(plan: SearchPlan) -> dict[str, str]:
    import subprocess
    import sys
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        commit = "unknown"
    tags = {"w2s.cli": " ".join(sys.argv), "mlflow.source.git.commit": commit,
            "w2s.search_space": plan.space.path.read_text() if Path(plan.space.path).exists() else ""}
    for pkg in ("w2s_ray", "ray", "torch", "transformers", "optuna", "mlflow"):
        try:
            tags[f"version.{pkg}"] = version(pkg)
        except Exception:  # noqa: BLE001
            pass
    return tags


def _log_stages(tracker, shared) -> dict[str, str]:
    runs: dict[str, str] = {}
    stages = {"weak": shared.weak, "ceiling": shared.ceiling,
              **{f"bootstrap_{i}": link for i, link in enumerate(shared.links, start=1)}}
    for name, stage in stages.items():
        metrics = stage.metrics
        flat = {f"{k}": v for k, v in metrics.get("final", {}).items()}
        flat.update({"train_seconds": metrics.get("train_seconds", 0.0), "steps": metrics.get("steps", 0)})
        artifacts = {"predictions": stage.path / "predictions", "checkpoint": stage.path / "checkpoint"}
        params = {"model": stage.model, **{f"train.{k}": v for k, v in stage.config.items()}}
        runs[name] = tracker.log_stage(name, stage.key, flat, artifacts, params)
    return runs
