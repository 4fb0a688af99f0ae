"""Training throughput for weak and strong, and what a cached rerun costs.

Runs one weak → student / ceiling experiment with the real offline MiniLM ladder twice against
the same fresh cache, side by side in one process, and prints:
  * examples/s (training examples × epochs / training seconds) per stage, from the cache ledger;
  * wall(second run) / wall(first run): the second run reuses every stage.

    python bench/pipeline_cache.py --data-dir ../shared/data [--n 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from w2s_ray.config import DataConfig, SplitSizes, TrainConfig
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.experiment import ExperimentSpec, run_experiment

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n", type=int, default=300, help="examples per half")
    args = p.parse_args()
    base = TrainConfig(lr=5e-5, epochs=1, batch_size=32, max_length=64)
    spec = ExperimentSpec(
        data=DataConfig(task="sst2", data_dir=args.data_dir, sizes=SplitSizes(a=args.n, b=args.n, val=100, test=100)),
        weak=f"{MINILM}@L1", strong=MINILM, weak_cfg=base.replace(lr=2e-4), ceiling_cfg=base, student_cfg=base,
    )
    cache = StageCache(tempfile.mkdtemp(prefix="w2s-bench-"))
    t0 = time.perf_counter()
    run_experiment(spec, cache)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_experiment(spec, cache)
    second = time.perf_counter() - t0
    for entry in cache.trainings():
        rate = entry["steps"] * base.batch_size / entry["seconds"]
        print(f"{entry['stage']:>8}: {rate:7.1f} examples/s  ({entry['steps']} steps in {entry['seconds']:.1f} s)")
    print(f"first run {first:.1f} s, second run {second:.1f} s, ratio second/first = {second / first:.3f}")
    print(f"trainings: {len(cache.trainings())} (the second run trained nothing)")


if __name__ == "__main__":
    main()
