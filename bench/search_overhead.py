"""Search overhead, storage and CPU use against naive runs, measured side by side in one run.

1. Runs ``python -m w2s_ray.search`` (local Ray) for N trials while sampling its whole process
   tree (driver, raylet, every Ray worker) twice a second: CPU seconds (user + sys) and bytes
   written. Reports
   * P2: the share of the search's wall time outside training and evaluation: one minus the
     union of the stage ledger's training intervals (model build, steps, predictions, publish)
     over the wall time (a union, since shared stages and trials may overlap);
   * P3: CPU busy = CPU seconds of the tree / (wall × cores);
   * bytes written (the tree's ``write_bytes``, transient Ray Train checkpoints included) per
     search and, after the shared stages, per trial, each as a ratio to the student's weight
     size; and the bytes the search leaves on disk, per directory.
2. Runs N naive experiments (``python -m w2s_ray.run``, each with an empty cache, so each one
   retrains weak + ceiling + student) with the same data sizes and models: P1 = wall(search) /
   wall(N naive runs).

    python bench/search_overhead.py --data-dir ../shared/data --preset quick --trials 6 \
        --n-a 200 --n-b 200 --n-val 100 --n-test 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from w2s_ray.search.presets import get_preset
from w2s_ray.tasks import get_task


class TreeSampler:
    """Polls a process and its descendants; keeps each process's latest CPU and write counters."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.seen: dict[tuple[int, float], tuple[float, int]] = {}
        self.names: dict[tuple[int, float], str] = {}  # each process's latest title (Ray workers retitle)
        self.history: dict[tuple[int, float], list[tuple[float, int]]] = {}  # (time, bytes written so far)
        self.series: list[tuple[float, int]] = []  # (time, bytes written so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    with proc.oneshot():
                        cpu = proc.cpu_times()
                        io = proc.io_counters()
                        key = (proc.pid, proc.create_time())
                        self.seen[key] = (cpu.user + cpu.system, io.write_bytes)
                        self.names[key] = process_kind(proc)
                        self.history.setdefault(key, []).append((time.time(), io.write_bytes))
                except psutil.Error:
                    continue
            self.series.append((time.time(), self.written()))
            self._stop.wait(self.interval)

    def written(self) -> int:
        return sum(w for _, w in self.seen.values())

    def cpu_seconds(self) -> float:
        return sum(c for c, _ in self.seen.values())

    def written_at(self, t: float) -> int:
        before = [w for s, w in self.series if s <= t]
        return before[-1] if before else 0

    def written_by_kind_after(self, t: float) -> dict[str, int]:
        """Bytes each kind of process wrote after time t, largest first."""
        out: dict[str, int] = {}
        for key, series in self.history.items():
            before = [w for s, w in series if s <= t]
            grown = series[-1][1] - (before[-1] if before else 0)
            out[self.names[key]] = out.get(self.names[key], 0) + grown
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def process_kind(proc: psutil.Process) -> str:
    """A process's role: the Ray actor or task title, the w2s_ray module, or the executable's name."""
    cmd = proc.cmdline()
    if cmd and cmd[0].startswith("ray::"):  # Ray rewrites a worker's argv to its current actor or task
        return cmd[0].split()[0].split(".")[0].split("(")[0]
    if "-m" in cmd[:-1]:
        return cmd[cmd.index("-m") + 1]
    return proc.name()


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -float("inf")
    for lo, hi in sorted(intervals):
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) if path.exists() else 0


def gb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("W2S_DATA_DIR"))
    p.add_argument("--preset", default="quick")
    p.add_argument("--task", default="sst2")
    p.add_argument("--trials", type=int, default=6)
    for split in ("a", "b", "val", "test"):
        p.add_argument(f"--n-{split}", type=int, default=None, help="reduced split size (default: the preset's)")
    p.add_argument("--search-arg", action="append", default=[], help="extra argument for the search (repeatable)")
    p.add_argument("--skip-naive", action="store_true")
    args = p.parse_args()
    preset = get_preset(args.preset)
    sizes = preset.sizes_for(get_task(args.task).kind)
    n = {s: getattr(args, f"n_{s}") or getattr(sizes, s) for s in ("a", "b", "val", "test")}
    work = Path(tempfile.mkdtemp(prefix="w2s-bench-"))
    repo = str(Path(__file__).resolve().parents[1])  # this checkout's w2s_ray, whatever the cwd
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "W2S_CACHE_DIR": str(work / "cache"),
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    space = work / "space.yaml"
    space.write_text(f"task: {args.task}\nparams:\n  lr: {{type: float, low: 2.0e-5, high: 2.0e-4, log: true}}\n"
                     "  epochs: {fixed: 2}\n  loss: {type: categorical, choices: [xent, logconf]}\n"
                     "  aux_coef: {type: float, low: 0.1, high: 1.0, when: {loss: logconf}}\n")
    sized = [f"--n-{s}={v}" for s, v in n.items()]
    search = [sys.executable, "-m", "w2s_ray.search", "--task", args.task, "--preset", args.preset,
              "--space", str(space), "--num-samples", str(args.trials), "--storage", str(work / "runs"),
              "--tracking-uri", f"sqlite:///{work}/mlflow.db", "--data-dir", args.data_dir, *sized, *args.search_arg]
    cores = len(os.sched_getaffinity(0))
    start = time.time()
    proc = subprocess.Popen(search, env=env, cwd=work, stdout=open(work / "search.log", "w"), stderr=subprocess.STDOUT)
    sampler = TreeSampler(proc.pid)
    rc = proc.wait()
    wall_search = time.time() - start
    sampler.stop()
    if rc:
        sys.exit(f"search failed ({rc}); see {work / 'search.log'}")
    ledger = [json.loads(x) for x in (work / "cache" / "ledger.jsonl").read_text().splitlines() if x.strip()]
    busy = union_seconds([(e["time"] - e["seconds"], e["time"]) for e in ledger])
    shared_end = max((e["time"] for e in ledger if e["stage"] != "student"), default=start)
    students = sum(1 for e in ledger if e["stage"] == "student")
    ceilings = (work / "cache").glob("ceiling/*/checkpoint/model.safetensors")
    weights = max((p.stat().st_size for p in ceilings), default=0)
    written = sampler.written()
    per_trial = (written - sampler.written_at(shared_end)) / max(1, students)
    print(f"preset {args.preset}, task {args.task}, {args.trials} trials, sizes {n}, {cores} cores, "
          f"search args {args.search_arg}")
    print(f"search wall {wall_search:.1f} s; {len(ledger)} trainings taking {sum(e['seconds'] for e in ledger):.1f} s "
          f"(union {busy:.1f} s)")
    print(f"P2 share of search wall time outside training/evaluation: {1 - busy / wall_search:.3f}")
    print(f"P3 CPU busy: {sampler.cpu_seconds():.1f} CPU s / ({wall_search:.1f} s x {cores}) = "
          f"{sampler.cpu_seconds() / (wall_search * cores):.3f}")
    if weights:
        print(f"student weights {gb(weights)}; written by the search {gb(written)} = {written / weights:.2f}x; "
              f"per trial (after the shared stages, {students} students) {gb(per_trial)} = {per_trial / weights:.2f}x")
        print("written per trial after the shared stages, by process: " + ", ".join(
            f"{kind} {gb(n / max(1, students))}" for kind, n in sampler.written_by_kind_after(shared_end).items() if n))
    left = {"train_runs": du(work / "runs" / f"{args.task}-{args.preset}-s0" / "train_runs"),
            "tune trials": du(work / "runs") - du(work / "runs" / f"{args.task}-{args.preset}-s0" / "train_runs"),
            "stage cache": du(work / "cache"), "mlflow artifacts": du(work / "mlartifacts") + du(work / "mlruns")}
    print("left on disk: " + ", ".join(f"{k} {gb(v)}" for k, v in left.items())
          + (f" (total {sum(left.values()) / weights:.2f}x the weights)" if weights else ""))
    if args.skip_naive:
        return
    naive = [sys.executable, "-m", "w2s_ray.run", "--task", args.task, "--data-dir", args.data_dir,
             "--weak", preset.weak, "--strong", preset.strong, *sized, "--max-length", str(preset.max_length),
             "--batch-size", str(preset.batch_size), "--weak-lr", str(preset.weak_grid[0]["lr"]),
             "--ceiling-lr", str(preset.ceiling_grid[0]["lr"]), "--weak-epochs", str(preset.reference_epochs),
             "--ceiling-epochs", str(preset.reference_epochs), "--epochs", "2"]
    wall_naive = 0.0
    for i in range(args.trials):
        out = ["--cache-dir", str(work / f"naive{i}"), "--out", str(work / f"naive{i}.json")]
        wall_naive += timed([*naive, *out], env)
    print(f"P1 wall(search) / wall({args.trials} naive runs) = {wall_search:.1f} / {wall_naive:.1f} = "
          f"{wall_search / wall_naive:.3f}")


if __name__ == "__main__":
    main()
