"""Where a Ray Train ``TorchTrainer``'s start-up goes, measured side by side in one run.

One weak stage (MiniLM @L1, quick-preset settings, ``--n`` examples, 1 epoch) is trained
``--repeats`` times as a real ``TorchTrainer`` with a wrapper entrypoint that timestamps the
worker's phases, next to:

* a no-op ``TorchTrainer`` (Ray Train's own fixed cost: controller and worker actors, placement
  group, torch process group, storage set-up, teardown);
* a bare Ray actor's start (one Python worker process: spawn, ``import ray``, register);
* ``import w2s_ray.train.worker`` in a fresh interpreter (torch, transformers, pyarrow).

    python bench/train_startup.py --data-dir ../shared/data --n 200 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRACE = "W2S_BENCH_TRACE"


def traced_worker(job_dict: dict) -> None:
    """The real ``train_worker``, with timestamps around its phases written to ``$W2S_BENCH_TRACE``."""
    t = {"entry": time.time()}
    from w2s_ray.train import worker

    t["imported"] = time.time()
    from w2s_ray.models import build_model
    from w2s_ray.train.data import encode
    from w2s_ray.train.job import TrainJob

    job = TrainJob.from_dict(job_dict)
    model, tok = build_model(job.model, mode=job.cfg.mode, pooling=job.cfg.pooling, seed=job.cfg.seed)
    t["model_built"] = time.time()
    encode(tok, job.train_inputs, job.kind, job.cfg.max_length)
    for spec in job.predict.values():
        encode(tok, spec["inputs"], job.kind, job.cfg.max_length)
    t["tokenized"] = time.time()
    del model
    worker.train_worker(job_dict)  # builds and tokenizes again: the stage as a search runs it
    t["trained"] = time.time()
    path = Path(os.environ[TRACE])
    path.write_text(json.dumps(t))


def noop_worker(config: dict) -> None:
    Path(os.environ[TRACE]).write_text(json.dumps({"entry": time.time()}))


class _Traced:
    """A TrainJob whose Ray Train entrypoint is :func:`traced_worker`."""

    def __init__(self, job, fn) -> None:
        self._job, self._fn = job, fn
        self.stage, self.threads = job.stage, job.threads

    def to_dict(self) -> dict:
        return {**self._job.to_dict(), "threads": self.threads}

    def entrypoint(self):
        return self._fn


class _CaptureExecutor:
    """Captures the job a Pipeline would run, without running it."""

    def __init__(self) -> None:
        self.job = None

    def run(self, job, name: str) -> None:
        self.job = job
        raise _Captured


class _Captured(Exception):
    pass


def fresh_import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import w2s_ray.train.worker; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("W2S_DATA_DIR"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cpus", type=float, default=2.0)
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from w2s_ray.config import DataConfig, SplitSizes, TrainConfig
    from w2s_ray.pipeline.cache import StageCache
    from w2s_ray.pipeline.data import prepare_data
    from w2s_ray.pipeline.stages import Pipeline
    from w2s_ray.search.presets import get_preset
    from w2s_ray.train.executor import RayTrainExecutor, ScalingSpec

    work = Path(tempfile.mkdtemp(prefix="w2s-startup-"))
    trace = work / "trace.json"
    os.environ[TRACE] = str(trace)
    preset = get_preset("quick")
    n = args.n
    sizes = SplitSizes(a=n, b=n, val=n // 2, test=n // 2)
    data = prepare_data(DataConfig(task="sst2", data_dir=args.data_dir, sizes=sizes))
    imports = [fresh_import_seconds() for _ in range(args.repeats)]
    ray.init(num_cpus=int(args.cpus), include_dashboard=False, runtime_env={"env_vars": {TRACE: str(trace)}})

    @ray.remote(num_cpus=0)
    class Bare:
        def ping(self) -> float:
            return time.time()

    actor = []
    for _ in range(args.repeats):
        t0 = time.time()
        a = Bare.remote()
        ray.get(a.ping.remote())
        actor.append(time.time() - t0)
        ray.kill(a)

    scaling = ScalingSpec(cpus_per_worker=args.cpus)
    executor = RayTrainExecutor(str(work / "train_runs"), scaling, max_failures=0)
    noop: dict[str, list[dict]] = {}
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    for i in range(args.repeats):
        for interval in ("2.0", "0.5"):  # the Train controller's poll of its workers (Ray's default: 2 s)
            os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = interval
            t0 = time.time()
            TorchTrainer(noop_worker, scaling_config=scaling.to_ray(),
                         run_config=RunConfig(name=f"noop{i}-{interval}", storage_path=str(work / "train_runs"))).fit()
            end = time.time()
            entry = json.loads(trace.read_text())["entry"]
            noop.setdefault(interval, []).append({"fit": end - t0, "to_entry": entry - t0, "after_entry": end - entry})
    os.environ.pop("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")

    runs = []
    cfg = TrainConfig(batch_size=preset.batch_size, max_length=preset.max_length, epochs=1, lr=2e-4)
    for i in range(args.repeats):
        cache = StageCache(work / f"cache{i}")
        capture = _CaptureExecutor()
        try:
            Pipeline(data, cache, capture).weak(preset.weak, cfg)
        except _Captured:
            pass
        job = capture.job
        t0 = time.time()
        executor.run(_Traced(job, traced_worker), name=f"weak{i}")
        end = time.time()
        t = json.loads(trace.read_text())
        ledger = cache.trainings()[-1]["seconds"]
        runs.append({"fit": end - t0, "to_entry": t["entry"] - t0, "imports": t["imported"] - t["entry"],
                     "model_build": t["model_built"] - t["imported"], "tokenize": t["tokenized"] - t["model_built"],
                     "train_worker": t["trained"] - t["tokenized"], "ledger": ledger,
                     "after_worker": end - t["trained"]})
    ray.shutdown()

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print(f"fresh `import w2s_ray.train.worker`: {statistics.median(imports):.2f} s")
    print(f"bare Ray actor start (one worker process): {statistics.median(actor):.2f} s")
    for interval, rows in noop.items():
        print(f"no-op TorchTrainer (controller poll {interval} s): fit {med(rows, 'fit'):.2f} s = "
              f"{med(rows, 'to_entry'):.2f} s to the train fn + {med(rows, 'after_entry'):.2f} s to return")
    r = runs
    overhead = med(r, "fit") - med(r, "ledger")
    print(f"weak stage ({n} examples, 1 epoch), median of {args.repeats}: fit {med(r, 'fit'):.2f} s, "
          f"ledger (train + predict + publish) {med(r, 'ledger'):.2f} s, start-up and teardown {overhead:.2f} s")
    print(f"  fit() to train fn entry (controller, worker group, process group): {med(r, 'to_entry'):.2f} s")
    print(f"  worker imports (torch, transformers, w2s_ray): {med(r, 'imports'):.2f} s")
    print(f"  model build: {med(r, 'model_build'):.2f} s; tokenization of every split: {med(r, 'tokenize'):.2f} s")
    print(f"  train_worker (build + tokenize + train + predict + publish): {med(r, 'train_worker'):.2f} s")
    print(f"  after the worker returns (report sync, teardown, checkpoint cleanup): {med(r, 'after_worker'):.2f} s")
    print(json.dumps({"imports": imports, "actor": actor, "noop": noop, "runs": runs}))


if __name__ == "__main__":
    main()
