"""Tune's own cost per trial, side by side in one run: the floor under a probe search's trials.

Each variant runs ``--trials`` trials of a trainable that sleeps ``--work`` seconds (a stand-in
for a probe fit) and reports once, ``--concurrent`` at once with one CPU each and actor reuse,
as the probe search runs them:

* ``plain``: ``tune.report(metrics)``;
* ``pointer``: the same plus a ~300-byte checkpoint directory, as a search trial reports its
  stage pointer (Tune copies it into the run storage);
* ``pointer+mlflow``: the same plus the search's MLflow trial callback on a SQLite store.

Prints seconds per trial beyond the work, and the share of the Tune phase outside the work
(``1 − work × trials / (phase × concurrent)``).

    python bench/tune_floor.py --trials 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def trainable(config: dict[str, Any]) -> None:
    from ray import tune

    time.sleep(config["work"])
    metrics = {"objective": float(config["i"]), "final": 1}
    if not config["pointer"]:
        tune.report(metrics)
        return
    staging = Path(tempfile.mkdtemp(prefix="w2s-floor-"))
    (staging / "stage.json").write_text(json.dumps({"kind": "student", "key": "k" * 20}))
    try:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(staging)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_variant(work_dir: Path, name: str, args: argparse.Namespace, pointer: bool, mlflow: bool) -> float:
    from ray import tune

    callbacks = []
    if mlflow:
        from w2s_ray.tracking import SearchTracker

        tracker = SearchTracker(f"sqlite:///{work_dir}/mlflow.db", "floor", name, work_dir / name)
        tracker.start({"variant": name})
        callbacks.append(tracker.callback(checkpoints="all"))
    space = {"i": tune.grid_search(list(range(args.trials))), "work": args.work, "pointer": pointer}
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"CPU": 1}), param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=args.concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(work_dir / "runs"), callbacks=callbacks, verbose=0),
    )
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--work", type=float, default=0.5, help="seconds each trial sleeps (a probe fit: 0.1-1 s)")
    args = p.parse_args()
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work_dir = Path(tempfile.mkdtemp(prefix="w2s-tune-floor-"))
    ray.init(num_cpus=args.concurrent, include_dashboard=False)
    try:
        rows = []
        for name, pointer, mlflow in (("plain", False, False), ("pointer", True, False),
                                      ("pointer+mlflow", True, True)):
            wall = run_variant(work_dir, name, args, pointer, mlflow)
            per_trial = wall * args.concurrent / args.trials - args.work
            outside = 1 - args.work * args.trials / (wall * args.concurrent)
            rows.append((name, wall, per_trial, outside))
    finally:
        ray.shutdown()
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"{args.trials} trials of {args.work:g} s work, {args.concurrent} at once, actor reuse, "
          f"{os.cpu_count()} CPUs")
    print("| variant | Tune phase s | s per trial beyond the work | share outside the work |")
    print("|---|---|---|---|")
    for name, wall, per_trial, outside in rows:
        print(f"| {name} | {wall:.1f} | {per_trial:.2f} | {outside:.2f} |")


if __name__ == "__main__":
    main()
