"""The search driver: validate everything, compute shared stages once, run Tune, report.

Order matters for users: every check that can fail on bad input runs before Ray starts,
before an MLflow run is created and before any training.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from w2s_ray.cli_common import key_values, positive, split_sizes
from w2s_ray.config import DataConfig, TrainConfig, to_dict
from w2s_ray.errors import UserError
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.crossfit import DEFAULT_FOLDS
from w2s_ray.pipeline.data import PreparedData, prepare_data
from w2s_ray.search.presets import Preset, get_preset
from w2s_ray.search.settings import SearchSettings, resolve_tell_lag
from w2s_ray.search.space import SearchSpace, default_space_path, load_space
from w2s_ray.search.storage import check_writable, is_remote, normalize
from w2s_ray.train.executor import Executor, ScalingSpec

if TYPE_CHECKING:
    from ray.tune import Callback, ResultGrid, Tuner
    from ray.tune.schedulers import ASHAScheduler

    from w2s_ray.pipeline.chain import Chain
    from w2s_ray.pipeline.stages import Pipeline, StageResult
    from w2s_ray.search.context import SearchContext, SharedStages
    from w2s_ray.tracking import SearchTracker

TRIAL_CPU = 0.01  # a trial's own process only launches a TorchTrainer and waits
FORWARDED_ENV = ("W2S_FAULT_DIR", "W2S_DATA_DIR", "W2S_MODEL_CACHE", "HF_HUB_OFFLINE", "HF_HOME",
                 "MLFLOW_TRACKING_URI", "TRANSFORMERS_OFFLINE")


@dataclass
class SearchPlan:
    """A fully validated search, ready to run: the user's settings and what was resolved from them."""

    settings: SearchSettings
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
    max_concurrent: int  # trials at once
    tell_lag: int | None  # trial k is sampled once trials 0..k-tell_lag have ended; None: told as they finish
    confirm_seeds: int  # further seeds the baselines and the best are retrained on
    use_gpu: bool  # every training asks for a GPU
    reports_per_epoch: int  # a student's reports to Tune per epoch: 1 / --asha-grace-epochs under --asha
    student_base: TrainConfig
    reference_base: TrainConfig
    data: PreparedData | None = None
    # fair budgets: role -> candidate overrides the reference is selected from (w2s_ray.search.budget)
    references: dict[str, list[dict]] = field(default_factory=dict)
    fold_choices: list[int] = field(default_factory=lambda: [DEFAULT_FOLDS])  # chains computed per fold count

    @property
    def budgets(self) -> dict[str, int]:
        """Configurations each role is tuned over: student trials, reference candidates."""
        return {"student": self.num_samples, **{role: len(c) for role, c in self.references.items()}}

    @property
    def exp_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def train_storage(self) -> str:
        return f"{self.exp_path}/train_runs"


def plan_search(settings: SearchSettings) -> SearchPlan:
    """All input validation; raises UserError (exit 2) before anything costly starts."""
    from w2s_ray.losses import LOSS_DEFAULT
    from w2s_ray.models import model_size, validate_model_spec
    from w2s_ray.search.cli import check_search_args
    from w2s_ray.tasks import get_task, resolve_data_dir
    from w2s_ray.tracking import check_tracking_uri, resolve_tracking_uri

    task = get_task(settings.task)
    use_gpu = gpu_request(settings)
    preset = get_preset(settings.preset or default_preset_name(use_gpu))
    check_search_args(settings)
    max_concurrent = settings.max_concurrent if settings.max_concurrent is not None else (
        preset.max_concurrent or os.cpu_count() or 1)
    if settings.num_samples is not None and settings.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {settings.num_samples}")
    positive("--max-concurrent", max_concurrent); positive("--num-workers", settings.num_workers)
    positive("--min-gap", settings.min_gap, allow_zero=True); positive("--val-labels", settings.val_labels)
    positive("--gap-z", settings.gap_z, allow_zero=True)
    positive("--confirm-seeds", settings.confirm_seeds, allow_zero=True)
    positive("--max-failures", settings.max_failures, allow_zero=True)
    positive("--checkpoint-interval-s", settings.checkpoint_interval_s, allow_zero=True)
    positive("--mlflow-flush-timeout-s", settings.mlflow_flush_timeout_s, allow_zero=True)
    reports_per_epoch = asha_reports_per_epoch(settings)
    space_path = Path(settings.space) if settings.space else preset_space_path(preset, task.name, task.kind)
    space = load_space(space_path, kind=task.kind, task=task.name)
    weak, strong, ladder = model_chain(settings, preset, space)
    if preset.weak_as_ladder:
        ladder = [weak] * len(space.ladder)
    max_bootstrap = min(space.max_bootstrap_steps(), len(ladder))
    chain = [weak, *ladder[:max_bootstrap], strong]
    for model in dict.fromkeys(chain):
        validate_model_spec(model)
    sizes = [model_size(m) for m in chain]
    for (small, a), (big, b) in zip(zip(chain, sizes), zip(chain[1:], sizes[1:])):
        if b < a:
            raise UserError(f"inconsistent model ladder: {big} ({b:,} params) is smaller than {small} ({a:,} params)")
    storage = normalize(settings.storage)
    check_writable(storage)
    tracking_uri = resolve_tracking_uri(settings.tracking_uri, Path.cwd())
    check_tracking_uri(tracking_uri)
    data_cfg = DataConfig(task=task.name, data_dir=resolve_data_dir(settings.data_dir),
                          sizes=split_sizes(settings, preset.sizes_for(task.kind)), seed=settings.seed,
                          balance=settings.balance,
                          task_options=key_values(settings.task_option, "--task-option"), pool_seed=settings.pool_seed)
    base = TrainConfig(batch_size=preset.batch_size, max_length=preset.max_length_for(task.kind), seed=settings.seed,
                       loss=LOSS_DEFAULT[task.kind]).replace(**preset.train)
    _check_probe_layers(space, strong)
    name = settings.name or f"{task.name}-{preset.name}-s{settings.seed}"
    plan = SearchPlan(
        settings=settings, task=task.name, kind=task.kind, preset=preset, space=space, data_cfg=data_cfg,
        weak=weak, strong=strong, ladder=ladder, max_bootstrap=max_bootstrap, storage=storage, name=name,
        cache_uri=normalize(settings.cache_dir) if settings.cache_dir else f"{storage.rstrip('/')}/cache",
        tracking_uri=tracking_uri, experiment=settings.experiment or f"w2s-{task.name}",
        num_samples=settings.num_samples or preset.num_samples, max_concurrent=max_concurrent,
        tell_lag=resolve_tell_lag(settings.tell_order, settings.tell_lag, max_concurrent),
        confirm_seeds=settings.confirm_seeds if settings.confirm_seeds is not None else preset.confirm_seeds,
        use_gpu=bool(use_gpu if use_gpu is not None else preset.use_gpu), reports_per_epoch=reports_per_epoch,
        student_base=base, reference_base=base.replace(epochs=preset.reference_epochs),
    )
    plan.references = reference_plan(plan)
    folds = space.params.get("bootstrap_folds")
    if folds is not None:
        from w2s_ray.search.space.domain import values

        plan.fold_choices = sorted(set(values(folds)))
    if settings.resume and not _search_exists(plan):
        raise UserError(f"--resume: no search named {name!r} under {storage} to resume")
    plan.data = prepare_data(data_cfg)  # missing/corrupt/single-class data fails here
    return plan


def asha_reports_per_epoch(settings: SearchSettings) -> int:
    """k for ``--asha-grace-epochs`` 1/k (1 without ASHA); UserError for any other value."""
    grace = settings.asha_grace_epochs
    if grace != 1.0 and not settings.asha:
        raise UserError(f"--asha-grace-epochs {grace:g} needs --asha (it sets the first ASHA rung)")
    k = round(1 / grace) if math.isfinite(grace) and 0 < grace <= 1 else 0
    if k < 1 or k > 16 or abs(k * grace - 1) > 1e-9:
        raise UserError(f"--asha-grace-epochs must be 1/k for a whole k from 1 to 16 (1, 0.5, 0.25, ...), "
                        f"got {grace:g}")
    return k


def asha_scheduler(plan: SearchPlan) -> ASHAScheduler | None:
    """ASHA over the students' reports (``plan.reports_per_epoch`` per epoch, then the trial's final
    one): the first rung after ``--asha-grace-epochs``, the last after the most epochs the space allows."""
    if not plan.settings.asha:
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs = plan.space.params.get("epochs")
    most = int(epochs.bounds[1] if epochs and epochs.type != "fixed" else (epochs.value if epochs else 2))
    return ASHAScheduler(metric="objective", mode="max", time_attr="training_iteration",
                         max_t=most * plan.reports_per_epoch + 1, grace_period=1)


def reference_plan(plan: SearchPlan) -> dict[str, list[dict]]:
    """Each reference's candidates: a budget like the student's over the knobs they share."""
    from w2s_ray.search.budget import reference_budget, reference_candidates

    given = plan.settings.reference_budget
    override = given if given is not None else plan.preset.reference_budget
    budget = reference_budget(plan.num_samples, plan.reference_base.mode, override)
    strong_depth = _depth(plan.strong)
    return {role: reference_candidates(grid, plan.space, budget, plan.settings.seed, plan.reference_base.mode,
                                       _depth(model), strong_depth, role)
            for role, model, grid in (("weak", plan.weak, plan.preset.weak_grid),
                                      ("ceiling", plan.strong, plan.preset.ceiling_grid))}


def _depth(model: str) -> int:
    from w2s_ray.models import parse_model_spec
    from w2s_ray.models.arch import load_config

    parsed = parse_model_spec(model)
    return parsed.layers or load_config(parsed)[2]


def gpu_request(settings: SearchSettings) -> bool | None:
    """``--use-gpu`` if given; else True when the cluster has or can start GPUs (probed only when
    no ``--preset`` is given either); else None: the preset decides."""
    if settings.use_gpu is not None or settings.preset:
        return settings.use_gpu
    from w2s_ray.search.gpus import detect_gpus

    found = detect_gpus(settings.address)
    if found:
        print(f"found {found.describe()}: preset paper on GPUs (pass --preset to choose another)", flush=True)
        return True
    return None


def default_preset_name(use_gpu: bool | None) -> str:
    """The preset when none is named: ``paper`` on GPUs (asked for or found), else ``probe``."""
    return "paper" if use_gpu else "probe"


def model_chain(settings: SearchSettings, preset: Preset, space: SearchSpace) -> tuple[str, str, list[str]]:
    """(weak, strong, ladder), each end overridable by ``--weak`` / ``--strong``.

    A preset with its own ladder (``probe``, ``mpnet``, ``paper``), chosen or implicit, owns the
    whole chain: mixing its ladder with a space file's pair gave inconsistent ladders. A preset
    without one takes the space file's ladder, and the space's pair too when the preset is implicit.
    """
    own = bool(settings.preset) or preset.ladder is not None
    weak = settings.weak or (preset.weak if own else space.weak or preset.weak)
    strong = settings.strong or (preset.strong if own else space.strong or preset.strong)
    ladder = list(preset.ladder) if preset.ladder is not None else list(space.ladder)
    return weak, strong, ladder


def preset_space_path(preset: Preset, task: str, kind: str) -> Path:
    """The preset's own space (``search_spaces/<space>_<kind>.yaml``), else the task's default."""
    from w2s_ray.search.space import spaces_dir

    if preset.space:
        path = spaces_dir() / f"{preset.space}_{kind}.yaml"
        if not path.is_file():
            raise UserError(f"preset {preset.name!r} needs the search space {path}, which does not exist; "
                            "pass --space FILE")
        return path
    return default_space_path(task, kind)


def _check_probe_layers(space: SearchSpace, strong: str) -> None:
    """A searched probe layer must exist in the strong model."""
    from w2s_ray.models import parse_model_spec
    from w2s_ray.models.arch import load_config

    spec = space.params.get("layer")
    if spec is None:
        return
    parsed = parse_model_spec(strong)
    _, _, total = load_config(parsed)
    top = parsed.layers or total
    values = [spec.value] if spec.type == "fixed" else list(spec.choices or ()) or [spec.low, spec.high]
    for value in values:
        if value is not None and int(value) > top:
            raise UserError(f"{space.path}: params.layer: {value} is beyond the strong model {strong}'s {top} layers")


def probe_models(plan: SearchPlan) -> list[str]:
    """Full models whose activations the search reads: references in probe mode, and the
    strong model (with its ladder) when any student may be a probe."""
    from w2s_ray.activations import feature_source

    models = []
    if plan.reference_base.mode == "probe":
        models += [plan.weak, plan.strong, *plan.ladder[: plan.max_bootstrap]]
    if "probe" in student_modes(plan):
        models += [plan.strong, *plan.ladder[: plan.max_bootstrap]]
    if reads_features(plan):
        models.append(plan.strong)
    return list(dict.fromkeys(feature_source(m, None).model for m in models))


def reads_features(plan: SearchPlan) -> bool:
    """Whether a trial's weak-label method may read the strong model's activations."""
    from w2s_ray.weak_labels import WEAK_LABELS

    spec = plan.space.params.get("weak_labels")
    methods = [] if spec is None else [spec.value] if spec.type == "fixed" else list(spec.choices or ())
    return any(WEAK_LABELS[m].reads_features for m in methods)


def student_modes(plan: SearchPlan) -> set[str]:
    """Training modes a trial may use."""
    spec = plan.space.params.get("mode")
    if spec is None:
        return {plan.student_base.mode}
    return {spec.value} if spec.type == "fixed" else set(spec.choices or ())


def _search_exists(plan: SearchPlan) -> bool:
    """A search to ``--resume``: its record (written before its first training) or Tune state."""
    from w2s_ray.search.record import read_search_record

    return read_search_record(plan.exp_path) is not None or _can_restore(plan)


def _can_restore(plan: SearchPlan) -> bool:
    from ray import tune

    if not is_remote(plan.exp_path) and not Path(plan.exp_path).exists():
        return False
    try:
        return tune.Tuner.can_restore(plan.exp_path)
    except Exception:  # noqa: BLE001
        return False


def init_ray(plan: SearchPlan) -> None:
    """Start or join Ray, forwarding the driver's settings to every worker.

    Inside a Ray job the job's own runtime env (``ray job submit --runtime-env-json``) is kept:
    only the keys it does not set are added, since Ray refuses to merge duplicate keys. With
    ``--address``, an unreachable cluster fails fast with a UserError (exit 2).
    """
    import ray

    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    # a worker group waiting behind other trials (or an autoscaling node) is not a failure
    env.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S",
                   os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "900"))
    runtime_env: dict[str, Any] = {"env_vars": env}
    address = plan.settings.address
    if address:
        check_ray_reachable(address)
        bound_gcs_connect()
        try:
            ray.init(address=address, runtime_env=missing_from_job(runtime_env), log_to_driver=True)
        except ConnectionError as exc:
            raise UserError(f"--address {address}: no Ray cluster answered ({exc})") from exc
    else:
        from w2s_ray.search.worker_logs import SETUP_HOOK

        runtime_env["worker_process_setup_hook"] = SETUP_HOOK
        ray.init(include_dashboard=False, runtime_env=missing_from_job(runtime_env))


def job_runtime_env() -> dict[str, Any]:
    """The runtime env of the Ray job this driver runs in (``ray job submit``), else ``{}``."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    raw = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    if not raw:
        return {}
    try:
        return dict(json.loads(raw).get("runtime_env") or {})
    except (ValueError, AttributeError, TypeError):
        return {}


def missing_from_job(runtime_env: dict[str, Any], job_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """``runtime_env`` less every field and env var the job's runtime env already sets.

    The job's values win: they are also in this driver's environment, and Ray refuses a
    ``ray.init(runtime_env=...)`` that repeats a field or an env var key of the job's.
    """
    job_env = job_runtime_env() if job_env is None else job_env
    job_vars = job_env.get("env_vars") or {}
    out = {k: v for k, v in runtime_env.items() if k != "env_vars" and k not in job_env}
    env_vars = {k: v for k, v in (runtime_env.get("env_vars") or {}).items() if k not in job_vars}
    if env_vars:
        out["env_vars"] = env_vars
    return out


GCS_CONNECT_BOUNDS = {  # ray.init gives up on a silent GCS after ~20 s instead of retrying for minutes
    "RAY_gcs_server_port_wait_time_s": "1",  # connect attempts (Python side; default 20)
    "RAY_py_gcs_connect_timeout_s": "10",  # per attempt: waiting for the GCS to answer (default 30)
    "RAY_gcs_rpc_server_connect_timeout_s": "5",  # per attempt: the gRPC channel (default 5)
}


def bound_gcs_connect() -> None:
    """Bound ray.init's own wait for the GCS (values already in the environment are kept)."""
    changed = False
    for key, value in GCS_CONNECT_BOUNDS.items():
        if key not in os.environ:
            os.environ[key] = value
            changed = True
    if changed:
        try:  # Ray reads its C++ config from the environment at import; re-read it
            from ray._raylet import Config  # type: ignore[attr-defined]  # the stub of ray._raylet is partial

            Config.initialize("")
        except Exception:  # noqa: BLE001 - a Ray without it keeps its defaults; the TCP check still ran
            pass


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) to TCP-check for a ``--address``; None for ``auto``/``local`` (found by Ray itself).

    ``host:port`` is the GCS; ``ray://host[:port]`` the Ray client server (default port 10001).
    """
    value = address.strip()
    if value in ("auto", "local"):
        return None
    if value.startswith(("http://", "https://")):
        raise UserError(f"--address {address}: that is a dashboard/job-server URL; give the GCS address "
                        "host:6379 or ray://host:10001, or submit with `ray job submit`")
    default_port = None
    if value.startswith("ray://"):
        value, default_port = value[len("ray://"):].split("/", 1)[0], 10001
    if "://" in value:
        raise UserError(f"--address {address}: expected host:port, ray://host:port or auto")
    host, sep, port = value.rpartition(":")
    if value.startswith("[") and "]" in value:  # [v6::addr]:port
        inner, _, rest = value[1:].partition("]")
        host, sep, port = inner, ":" if rest.startswith(":") else "", rest[1:]
    elif not sep or "]" in port or ":" in host:
        host, port = value, ""
    if not port:
        if default_port is None:
            raise UserError(f"--address {address}: expected host:port (the GCS, e.g. 10.0.0.5:6379)")
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address}: port {port!r} is not a number in 1..65535")
    if not host:
        raise UserError(f"--address {address}: no host")
    return host, int(port)


def check_ray_reachable(address: str, timeout_s: float = 5.0) -> None:
    """UserError unless something accepts a TCP connection at the address's GCS (or client) port."""
    import socket

    endpoint = gcs_endpoint(address)
    if endpoint is None:
        return
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"--address {address}: no Ray cluster answers at {host}:{port} ({reason}); "
                        "is the cluster up and the address its GCS (head:6379)?") from exc


def scaling_for(plan: SearchPlan) -> ScalingSpec:
    """Resources per Train worker: the CLI's, else the preset's on a cluster, else sized from the local node.

    On a cluster (``--address``, or inside a Ray job) the nodes a training needs may not exist yet
    (autoscaling from an empty, 0-CPU head), so the preset fixes each worker's size; a local
    run's node is real, so its CPUs are shared between the concurrent trainings.
    """
    import ray

    settings = plan.settings
    preset = plan.preset
    cpus = settings.cpus_per_worker
    if cpus is None and settings.address:
        cpus = preset.cpus_per_worker
    if cpus is None:
        total = ray.cluster_resources().get("CPU", 1)
        # each trial's driver holds TRIAL_CPU; the Train workers get the rest (fractions are fine)
        share = (total - TRIAL_CPU * plan.max_concurrent) / max(1, plan.max_concurrent * settings.num_workers)
        cpus = max(0.5, math.floor(share * 100) / 100)
    gpus = settings.gpus_per_worker if settings.gpus_per_worker is not None else preset.gpus_per_worker
    return ScalingSpec(num_workers=settings.num_workers, use_gpu=plan.use_gpu, cpus_per_worker=cpus,
                       gpus_per_worker=gpus)


def shared_scaling(plan: SearchPlan, scaling: ScalingSpec) -> ScalingSpec:
    """Shared stages run before any trial, ``--shared-concurrency`` at once: on a local machine they share every CPU."""
    import ray

    from w2s_ray.search.concurrency import shared_concurrency

    if plan.settings.cpus_per_worker is not None or plan.settings.address:
        return scaling
    total = ray.cluster_resources().get("CPU", 1) / shared_concurrency(plan)
    return replace(scaling, cpus_per_worker=max(min(scaling.cpus_per_worker, total),
                                                math.floor(100 * total / scaling.num_workers) / 100))


def compute_shared(plan: SearchPlan, executor: Executor) -> SharedStages:
    """Weak and ceiling (each with its own lr selection on GT validation) and bootstrap links.

    ``executor`` runs each training: a ``RayTrainExecutor`` in a search, any executor in tests.
    """
    import numpy as np

    from w2s_ray.activations import SplitActivations, feature_source
    from w2s_ray.analysis.metrics import accuracy, gap_standard_error
    from w2s_ray.faults import fault_point
    from w2s_ray.pipeline.stages import Pipeline, labelled_val
    from w2s_ray.search.concurrency import prefetch_shared
    from w2s_ray.search.context import SharedStages

    assert plan.data is not None  # prepared by plan_search
    acts = SplitActivations(plan.data, plan.cache_uri, plan.reference_base.max_length, plan.reference_base.pooling)
    for model in probe_models(plan):  # one extraction per model, shared by every stage and trial
        acts.ensure(model, executor)
    pipe = Pipeline(plan.data, StageCache(plan.cache_uri), executor, val_labels=plan.settings.val_labels,
                    activations=acts)
    prefetch = prefetch_shared(plan, pipe)  # candidates start concurrently; the serial code below waits on them
    weak, weak_choice, weak_table = pipe.select("weak", plan.weak, plan.reference_base, plan.references["weak"])
    fault_point("driver.shared.after_weak")  # reliability tests only (w2s_ray.faults)
    ceiling, ceil_choice, ceil_table = pipe.select("ceiling", plan.strong, plan.reference_base,
                                                   plan.references["ceiling"])
    chains = {folds: search_chain(plan, pipe, weak, ceiling, folds) for folds in plan.fold_choices}
    default = chains.get(DEFAULT_FOLDS) or chains[plan.fold_choices[0]]
    links = default.links
    prefetch.close()
    val = labelled_val(plan.data.splits["val"].labels, plan.settings.val_labels)
    known = ~np.isnan(val)
    shipped = [feature_source(m, None).model for m in (plan.strong, *plan.ladder[: plan.max_bootstrap])]
    if "probe" in student_modes(plan) or reads_features(plan):
        for model in shipped:
            acts.hidden(model, executor)
    return SharedStages(
        weak=weak, ceiling=ceiling, links=links, activations=acts.preloaded(shipped),
        weak_val_acc=accuracy(weak.probs("val")[known], val[known]),
        ceiling_val_acc=accuracy(ceiling.probs("val")[known], val[known]),
        gap_se=gap_standard_error(weak.probs("val")[known], ceiling.probs("val")[known], val[known]),
        selection={"weak": {"model": plan.weak, "chosen": weak_choice, "candidates": weak_table,
                            "budget": len(weak_table), **_accuracies(weak)},
                   "ceiling": {"model": plan.strong, "chosen": ceil_choice, "candidates": ceil_table,
                               "budget": len(ceil_table), **_accuracies(ceiling)},
                   "bootstrap": default.selection,
                   "budgets": {**plan.budgets, **({"bootstrap_link": default.selection[0]["budget"]}
                                                  if default.selection else {})}},
        chains={folds: chain.links for folds, chain in chains.items()},
    )


def _accuracies(stage: StageResult) -> dict[str, float | None]:
    final = stage.metrics.get("final", {})
    return {"val_acc": final.get("val_acc"), "test_acc": final.get("test_acc")}


def search_chain(plan: SearchPlan, pipe: Pipeline, weak: StageResult, ceiling: StageResult, folds: int) -> Chain:
    """The search's bootstrap chain over ``folds`` folds: the one chain recipe ``run`` uses too,
    anchored on the selected weak model's and ceiling's learning rates."""
    from w2s_ray.pipeline.chain import Chain, link_recipe, run_chain

    if not plan.max_bootstrap:
        return Chain()
    recipe = link_recipe(plan.reference_base, plan.weak, weak.config["lr"], plan.strong, ceiling.config["lr"], folds)
    return run_chain(pipe, plan.ladder[: plan.max_bootstrap], weak, recipe)


def search_context(plan: SearchPlan, shared: SharedStages, scaling: ScalingSpec) -> SearchContext:
    """What every trial receives: the data, the shared stages and the student settings."""
    from w2s_ray.search.context import SearchContext

    assert plan.data is not None  # prepared by plan_search
    return SearchContext(
        data=plan.data, shared=shared, cache_uri=plan.cache_uri, train_storage=plan.train_storage,
        strong=plan.strong, student_base=plan.student_base, scaling=scaling,
        max_failures=plan.settings.max_failures, checkpoint_interval_s=plan.settings.checkpoint_interval_s,
        val_labels=plan.settings.val_labels, min_gap=plan.settings.min_gap,
        select_on=plan.settings.select_on, gap_z=plan.settings.gap_z, baselines=baseline_points(plan, shared),
        reports_per_epoch=plan.reports_per_epoch,
    )


def baseline_points(plan: SearchPlan, shared: SharedStages) -> list[dict[str, Any]]:
    """The space's baselines, trained like the ceiling: its chosen reference settings (e.g. probe
    layer and L2 strength) fill the knobs a baseline leaves at their defaults."""
    chosen = shared.selection.get("ceiling", {}).get("chosen", {})
    points = []
    for point in plan.space.points_to_evaluate():
        given = next((b for b in plan.space.baseline if all(point.get(k) == v for k, v in b.items())), {})
        extra = {k: v for k, v in chosen.items()
                 if k not in given and k in point and plan.space.params[k].contains(v)}
        points.append({**point, **extra})
    return points


def make_tuner(plan: SearchPlan, ctx: SearchContext, callbacks: list[Callback]) -> Tuner:
    from ray import tune

    from w2s_ray.search.searcher import make_searcher
    from w2s_ray.search.trainable import student_trial

    # a probe trial fits in its own process, so it holds a CPU; a fine-tune trial only waits on Ray Train
    trial_cpu = 1.0 if student_modes(plan) == {"probe"} else TRIAL_CPU
    trainable = tune.with_resources(tune.with_parameters(student_trial, ctx=ctx), {"CPU": trial_cpu})
    if _can_restore(plan):
        print(f"resuming search {plan.name} from {plan.exp_path}")
        return tune.Tuner.restore(plan.exp_path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  )
    scheduler = asha_scheduler(plan)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=make_searcher(plan.space, plan.settings.seed, plan.max_concurrent,
                                                             ctx.baselines, plan.settings.tell_order,
                                                             plan.num_samples, tell_lag=plan.tell_lag),
                                    scheduler=scheduler, num_samples=plan.num_samples,
                                    max_concurrent_trials=plan.max_concurrent,
                                    # a probe trial is a sub-second fit: keep its process (imports, the
                                    # shipped activations) for the next trial instead of starting another
                                    reuse_actors=trial_cpu == 1.0),
        run_config=tune.RunConfig(name=plan.name, storage_path=plan.storage, callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=plan.settings.max_failures),
                                  verbose=1),
    )


def run_search(plan: SearchPlan) -> dict[str, Any]:
    """Run a validated plan end to end; returns the summary written to storage."""
    import ray

    from w2s_ray.search.outputs import confirm_seeds, prune_weights, summarize_search, write_outputs
    from w2s_ray.search.record import write_search_record
    from w2s_ray.tracking import SearchTracker
    from w2s_ray.train.executor import RayTrainExecutor

    init_ray(plan)  # an address that does not answer fails here, before anything is written
    try:
        record = write_search_record(plan, _search_params(plan))  # the search exists from here on: --resume finds it
        if plan.settings.resume and not _can_restore(plan):
            print(f"resuming search {plan.name}: no trial state saved yet; finished stages come from the cache")
        tracker = SearchTracker(plan.tracking_uri, plan.experiment, plan.name, plan.exp_path,
                                search_id=record["search_id"])
        tracker.start(params=_search_params(plan), tags=_search_tags(plan))
        scaling = scaling_for(plan)
        interval = plan.settings.checkpoint_interval_s
        executor = RayTrainExecutor(plan.train_storage, scaling, plan.settings.max_failures,
                                    checkpoint_interval_s=interval)
        shared = compute_shared(plan, RayTrainExecutor(plan.train_storage, shared_scaling(plan, scaling),
                                                       plan.settings.max_failures, checkpoint_interval_s=interval))
        _log_stages(tracker, shared, plan.cache_uri)
        ctx = search_context(plan, shared, scaling)
        callback = tracker.callback(checkpoints=plan.settings.checkpoints,
                                    flush_timeout_s=plan.settings.mlflow_flush_timeout_s)
        from w2s_ray.search.fault_hooks import fault_callbacks  # test hooks only when W2S_FAULT_DIR is set
        grid = make_tuner(plan, ctx, [callback, *fault_callbacks()]).fit()
        _mark_orphans(tracker, grid)
        summary = {"search_id": record["search_id"], **summarize_search(plan, ctx, grid)}
        if plan.confirm_seeds:
            summary["confirm"] = confirm_seeds(plan, ctx, summary, executor)
        pruned = prune_weights(plan, summary, grid)  # weights of the baselines and the top-k stay
        summary["weights"] = pruned.to_dict()
        outputs = write_outputs(plan, summary, grid)
        artifacts = {"outputs": outputs}
        if (outputs / "plots").is_dir():  # plots/ on the parent run, where `report` puts them too
            plots = outputs.parent / f"{outputs.name}-plots"
            (outputs / "plots").rename(plots)
            artifacts["plots"] = plots
        tracker.tag_weights(callback, pruned.trial_keys, pruned.kept, pruned.pruned, plan.cache_uri)
        unlogged = tracker.finish(summary=summary["final_metrics"], best_config=summary["best_config"],
                                  artifacts=artifacts, flush_timeout_s=plan.settings.mlflow_flush_timeout_s)
        if not unlogged.ok:
            print(f"warning: some MLflow writes could not be made; see {tracker.unlogged_path}")
        return summary
    finally:
        ray.shutdown()


def _mark_orphans(tracker: SearchTracker, grid: ResultGrid) -> None:
    """Tag child runs of trials this search no longer knows (lost between two Tune state saves)."""
    from w2s_ray.tracking.orphans import mark_orphan_trials

    if tracker.experiment_id is None or tracker.parent_run_id is None:
        return  # the tracking server never answered: nothing of this search is in MLflow to mark
    results = (grid[i] for i in range(len(grid)))
    known = {str(r.metrics["trial_id"]) for r in results if r.metrics and r.metrics.get("trial_id")}
    known |= {str(t) for t in grid.get_dataframe().get("trial_id", [])}
    orphans = mark_orphan_trials(tracker.client, tracker.experiment_id, tracker.parent_run_id, known)
    if orphans:
        print(f"marked {len(orphans)} MLflow trial run(s) of trials lost before Tune saved them as w2s.orphan: "
              + ", ".join(orphans))


def _search_params(plan: SearchPlan) -> dict[str, Any]:
    return {"task": plan.task, "preset": plan.preset.name, "space": str(plan.space.path), "weak": plan.weak,
            "strong": plan.strong, "ladder": ",".join(plan.ladder), "num_samples": plan.num_samples,
            "seed": plan.settings.seed, "tell_order": plan.settings.tell_order,
            "tell_lag": plan.tell_lag,
            "select_on": plan.settings.select_on, "val_labels": plan.settings.val_labels,
            "sizes": json.dumps(to_dict(plan.data_cfg.sizes)), "min_gap": plan.settings.min_gap,
            "gap_z": plan.settings.gap_z, **{f"budget.{role}": n for role, n in plan.budgets.items()},
            "bootstrap_folds": ",".join(map(str, plan.fold_choices))}


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
            "w2s.search_space": plan.space.source_text() if Path(plan.space.path).exists() else ""}
    for pkg in ("w2s_ray", "ray", "torch", "transformers", "optuna", "mlflow"):
        try:
            tags[f"version.{pkg}"] = version(pkg)
        except Exception:  # noqa: BLE001
            pass
    return tags


def _log_stages(tracker: SearchTracker, shared: SharedStages, cache_uri: str) -> dict[str, str]:
    from w2s_ray.pipeline.stage_pointer import weights_uri

    runs: dict[str, str] = {}
    stages = {"weak": shared.weak, "ceiling": shared.ceiling,
              **{f"bootstrap_{i}": link for i, link in enumerate(shared.links, start=1)}}
    budgets = {role: shared.selection[role]["budget"] for role in ("weak", "ceiling")
               if "budget" in shared.selection.get(role, {})}
    budgets.update({f"bootstrap_{e['link']}": e["budget"] for e in shared.selection.get("bootstrap", [])})
    for name, stage in stages.items():
        metrics = stage.metrics
        flat = {f"{k}": v for k, v in metrics.get("final", {}).items()}
        flat.update({"train_seconds": metrics.get("train_seconds", 0.0), "steps": metrics.get("steps", 0)})
        artifacts = {"predictions": stage.path / "predictions"}  # weights: one copy, in the stage cache
        params = {"model": stage.model, **{f"train.{k}": v for k, v in stage.config.items()}}
        if name in budgets:
            params["budget"] = budgets[name]
        tags = {"w2s.checkpoint_uri": weights_uri(cache_uri, stage.kind, stage.key)}
        runs[name] = tracker.log_stage(name, stage.key, flat, artifacts, params, tags)
    return runs
