"""Shared stages serial vs concurrent (``--shared-concurrency``), side by side on one local Ray.

Runs the search's ``compute_shared`` (weak and ceiling candidates of the preset, each a Ray
Train run) once per concurrency level, each into an empty stage cache, alternating the order
over ``--rounds`` so that machine load affects both alike; prints the wall times and ratios.

    python bench/shared_concurrency.py --data-dir ../shared/data --preset quick --n 200 --levels 1 2 \
        --reference-budget 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("W2S_DATA_DIR"))
    p.add_argument("--preset", default="quick")
    p.add_argument("--n", type=int, default=200, help="examples in A and B (val and test get half)")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--reference-budget", type=int, default=None,
                   help="candidates per reference (default: the search's, as many as its trials up to 8)")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from w2s_ray.search.cli import parse_settings
    from w2s_ray.search.driver import (
        compute_shared,
        init_ray,
        plan_search,
        scaling_for,
        shared_scaling,
    )
    from w2s_ray.train.executor import RayTrainExecutor

    work = Path(tempfile.mkdtemp(prefix="w2s-shared-"))
    space = work / "space.yaml"
    space.write_text("task: sst2\nparams:\n  lr: {type: float, low: 2.0e-5, high: 2.0e-4, log: true}\n")
    n = args.n
    argv = ["--task", "sst2", "--preset", args.preset, "--space", str(space), "--data-dir", args.data_dir,
            "--storage", str(work / "runs"), "--tracking-uri", f"sqlite:///{work}/mlflow.db",
            f"--n-a={n}", f"--n-b={n}", f"--n-val={n // 2}", f"--n-test={n // 2}",
            *([f"--reference-budget={args.reference_budget}"] if args.reference_budget else [])]
    plan = plan_search(parse_settings(argv))
    init_ray(plan)
    walls: dict[int, list[float]] = {level: [] for level in args.levels}
    try:
        scaling = scaling_for(plan)
        for r in range(args.rounds):
            for level in (args.levels if r % 2 == 0 else list(reversed(args.levels))):
                plan.settings = replace(plan.settings, shared_concurrency=level)
                plan.cache_uri = str(work / f"cache-{level}-{r}")
                sized = shared_scaling(plan, scaling)
                executor = RayTrainExecutor(f"{plan.train_storage}-{level}-{r}", sized, 0)
                t0 = time.perf_counter()
                compute_shared(plan, executor)
                walls[level].append(time.perf_counter() - t0)
                print(f"round {r} concurrency {level} ({sized.cpus_per_worker:g} CPUs per worker): "
                      f"{walls[level][-1]:.1f} s", flush=True)
    finally:
        ray.shutdown()
    base = sum(walls[args.levels[0]])
    for level, values in walls.items():
        print(f"concurrency {level}: total {sum(values):.1f} s over {len(values)} rounds; "
              f"ratio to concurrency {args.levels[0]}: {sum(values) / base:.3f}")


if __name__ == "__main__":
    main()
