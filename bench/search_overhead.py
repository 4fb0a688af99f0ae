"""Search overhead and the saving from shared stages, measured side by side in one run.

1. Runs ``python -m w2s_ray.search`` (local Ray) for N trials and reports the share of wall time
   spent outside training and evaluation (Ray start, scheduling, data loading, logging): one minus
   the summed training seconds recorded in the stage ledger (model build, steps, predictions)
   over the search's wall time.
2. Runs N naive experiments (``python -m w2s_ray.run``, each with an empty cache, so each one
   retrains weak + ceiling + student) with the same data sizes and models, and prints
   wall(N-trial search) / wall(N naive runs).

    python bench/search_overhead.py --data-dir ../shared/data --preset quick --trials 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from w2s_ray.search.presets import get_preset
from w2s_ray.tasks import get_task


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("W2S_DATA_DIR"))
    p.add_argument("--preset", default="quick")
    p.add_argument("--task", default="sst2")
    p.add_argument("--trials", type=int, default=4)
    args = p.parse_args()
    preset = get_preset(args.preset)
    work = Path(tempfile.mkdtemp(prefix="w2s-bench-"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "W2S_CACHE_DIR": str(work / "cache")}
    space = work / "space.yaml"
    space.write_text(f"task: {args.task}\nparams:\n  lr: {{type: float, low: 2.0e-5, high: 2.0e-4, log: true}}\n"
                     "  epochs: {fixed: 2}\n  loss: {type: categorical, choices: [xent, logconf]}\n"
                     "  aux_coef: {type: float, low: 0.1, high: 1.0, when: {loss: logconf}}\n")
    search = [sys.executable, "-m", "w2s_ray.search", "--task", args.task, "--preset", args.preset,
              "--space", str(space), "--num-samples", str(args.trials), "--storage", str(work / "runs"),
              "--tracking-uri", f"sqlite:///{work}/mlflow.db", "--data-dir", args.data_dir]
    wall_search = timed(search, env)
    ledger = [json.loads(x) for x in (work / "cache" / "ledger.jsonl").read_text().splitlines() if x.strip()]
    train_seconds = sum(entry["seconds"] for entry in ledger)
    sizes = preset.sizes_for(get_task(args.task).kind)
    naive = [sys.executable, "-m", "w2s_ray.run", "--task", args.task, "--data-dir", args.data_dir,
             "--weak", preset.weak, "--strong", preset.strong, "--n-a", str(sizes.a), "--n-b", str(sizes.b),
             "--n-val", str(sizes.val), "--n-test", str(sizes.test), "--max-length", str(preset.max_length),
             "--batch-size", str(preset.batch_size), "--weak-lr", str(preset.weak_grid[0]["lr"]),
             "--ceiling-lr", str(preset.ceiling_grid[0]["lr"]), "--weak-epochs", str(preset.reference_epochs),
             "--ceiling-epochs", str(preset.reference_epochs), "--epochs", "2"]
    wall_naive = 0.0
    for i in range(args.trials):
        out = ["--cache-dir", str(work / f"naive{i}"), "--out", str(work / f"naive{i}.json")]
        wall_naive += timed([*naive, *out], env)
    print(f"preset {args.preset}, task {args.task}, {args.trials} trials")
    print(f"search wall {wall_search:.1f} s; trainings {len(ledger)} taking {train_seconds:.1f} s")
    print(f"share of search wall time outside training/evaluation: {1 - train_seconds / wall_search:.3f}")
    print(f"wall(search) / wall({args.trials} naive runs) = {wall_search:.1f} / {wall_naive:.1f} = "
          f"{wall_search / wall_naive:.3f}")


if __name__ == "__main__":
    main()
