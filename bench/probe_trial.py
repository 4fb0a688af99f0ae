"""Where a probe trial's own time goes, in-process: no Ray, no Tune, no MLflow.

Prepares the probe preset's search (activations, references and links, in-process, into
``--cache-dir``), then runs ``--trials`` trial bodies (:func:`w2s_ray.search.trainable.train_student`
plus the trial's final metrics and its stage pointer) on configs drawn by the search's own
seeded TPE sampler over its own space, under ``cProfile``. Prints per-trial seconds of each
phase, the sampler's ask/tell included (the driver's share of a real search), side by side:

    python bench/probe_trial.py --data-dir ../shared/data --task sst2 --trials 60 --cache-dir /tmp/pcache --seed 7

What the phases leave out of a search trial is Tune's and Ray's share: the trial's scheduling,
the report handshake and the MLflow callback (``bench/tune_floor.py`` measures those).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path

PHASES = {  # label -> (module suffix, function): cumulative seconds of the first match
    "probe fit": ("train/probe.py", "fit_probe"),
    "weak-label method": ("weak_labels.py", "apply"),
    "float32 features": ("activations/features.py", "get"),
    "predictions": ("train/probe.py", "probs"),
    "publish (parquet, weights, metrics)": ("pipeline/cache.py", "put"),
    "stage key": ("pipeline/cache.py", "stage_key"),
    "trial metrics": ("search/trainable.py", "trial_metrics"),
    "stage pointer": ("pipeline/stage_pointer.py", "write_pointer"),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("W2S_DATA_DIR"))
    p.add_argument("--task", default="sst2")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--cache-dir", required=True, help="stage cache (reuse one across runs: extraction is minutes)")
    p.add_argument("--seed", type=int, default=0,
                   help="split seed over pool 0: a seed the cache has not seen trains every student anew")
    args = p.parse_args()

    import optuna

    from w2s_ray.pipeline.stage_pointer import write_pointer
    from w2s_ray.search.cli import parse_settings
    from w2s_ray.search.driver import compute_shared, plan_search, search_context
    from w2s_ray.search.trainable import train_student, trial_metrics
    from w2s_ray.train.executor import LocalExecutor, ScalingSpec

    storage = Path(tempfile.mkdtemp(prefix="w2s-probe-trial-"))
    plan = plan_search(parse_settings(["--task", args.task, "--preset", "probe", "--data-dir", args.data_dir,
                                       "--cache-dir", args.cache_dir, "--storage", str(storage),
                                       "--num-samples", str(args.trials), "--confirm-seeds", "0",
                                       "--seed", str(args.seed), "--pool-seed", "0",
                                       "--tracking-uri", f"sqlite:///{storage}/mlflow.db"]))
    started = time.perf_counter()
    shared = compute_shared(plan, LocalExecutor())
    print(f"shared stages (activations, references, links): {time.perf_counter() - started:.1f} s")
    ctx = search_context(plan, shared, ScalingSpec())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=len(ctx.baselines) or 2))
    for point in ctx.baselines:
        study.enqueue_trial(point)
    profile = cProfile.Profile()
    sampler_s = trial_s = 0.0
    for i in range(args.trials):
        t0 = time.perf_counter()
        trial = study.ask()
        constants = plan.space.define_by_run(trial) or {}  # suggests into trial.params first
        config = {**trial.params, **constants}
        t1 = time.perf_counter()
        profile.enable()
        student = train_student(config, ctx, LocalExecutor(), f"bench-{i}")
        metrics = trial_metrics(ctx, student)
        staging = write_pointer(Path(tempfile.mkdtemp(prefix="w2s-pointer-")), ctx.cache_uri, "student", student.key)
        profile.disable()
        shutil.rmtree(staging, ignore_errors=True)
        t2 = time.perf_counter()
        study.tell(trial, metrics["objective"])
        sampler_s += time.perf_counter() - t2 + (t1 - t0)
        trial_s += t2 - t1
    stats = pstats.Stats(profile)
    cumulative = {}
    for (path, _, name), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        for label, (suffix, func) in PHASES.items():
            if name == func and path.endswith(suffix):
                cumulative[label] = max(cumulative.get(label, 0.0), cum)
    n = args.trials
    print(f"probe preset, task {args.task}, {n} trials in-process, {os.cpu_count()} CPUs")
    print("(phases nest: the weak-label method reads the float32 features, and its s2s folds are probe fits)")
    print("| phase | s per trial | share of the trial body |")
    print("|---|---|---|")
    for label in PHASES:
        seconds = cumulative.get(label, 0.0)
        print(f"| {label} | {seconds / n:.3f} | {seconds / trial_s:.2f} |")
    print(f"| **trial body** | **{trial_s / n:.3f}** | 1.00 |")
    print(f"| TPE ask + tell (driver) | {sampler_s / n:.3f} | — |")
    shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    main()
