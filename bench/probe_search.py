"""The probe search's speed, measured side by side in one run: cold cache, then warm.

1. Cold: ``python -m w2s_ray.search --preset probe`` with an empty cache (activation extraction,
   reference selection and every trial included).
2. Warm: a second search against the now-filled cache with ``--seed 1 --pool-seed 0``: the same
   texts dealt out again, so every activation is reused while the splits, the references and the
   sampled configs are new (a repeated seed would find every student in the cache). With several
   ``--concurrent`` levels or ``--tell-orders`` (``index``, ``finish``, or ``index:L`` for
   ``--tell-lag L``), one warm search per level and order (seeds 1, 2, ...), side by side.
For each: wall time, trials per minute over the Tune phase (first trial start to last trial end),
and the share of the Tune phase outside training and evaluation, per trial slot:
``1 - busy / (phase wall × concurrent trials)``, where busy is the students' recorded seconds from
the stage ledger (probe fit + predictions), then also the weak-label methods' own fits
(``label_seconds``: kNN, logreg, strong-to-strong folds). Last, the share of the phase during
which no fit of any trial was running (the union of the fits' intervals), and the share of the
whole run (Ray start, extraction, references, links, trials, outputs) during which no extraction
or fit was running, and the slot seconds of the Tune phase per trial beyond its fits and label
methods, which unlike the shares does not grow when the sampled configs are cheaper.

    python bench/probe_search.py --data-dir ../shared/data --task sst2 --trials 100
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

import pandas as pd


def run_search(work: Path, name: str, args: argparse.Namespace, concurrent: int, *extra: str) -> dict:
    """One search; returns its measurements."""
    cmd = [sys.executable, "-m", "w2s_ray.search", "--task", args.task, "--preset", "probe",
           "--num-samples", str(args.trials), "--confirm-seeds", "0", "--max-concurrent", str(concurrent),
           "--storage", str(work / "runs"), "--cache-dir", str(work / "cache"), "--name", name,
           "--tracking-uri", f"sqlite:///{work}/mlflow.db", "--data-dir", args.data_dir, *extra]
    ledger_path = work / "cache" / "ledger.jsonl"
    before = len(ledger_path.read_text().splitlines()) if ledger_path.exists() else 0
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    ledger = [json.loads(x) for x in ledger_path.read_text().splitlines()[before:] if x.strip()]
    trials = pd.read_parquet(work / "runs" / name / "w2s" / "trials.parquet")
    ends = trials["timestamp"].astype(float)
    phase = float(ends.max() - (ends - trials["time_total_s"].astype(float)).min())
    students = [e for e in ledger if e["stage"] == "student"]
    fit = sum(e["seconds"] for e in students)
    # the weak-label methods' own fits (kNN, logreg, strong-to-strong folds: their s2s ledger
    # entries fall inside this interval, so they are not added again)
    labels = sum(e.get("label_seconds", 0.0) for e in students)
    busy = fit + labels
    spans = sorted((e["time"] - e["seconds"] - e.get("label_seconds", 0.0), e["time"]) for e in students)
    every = sorted((e["time"] - e["seconds"] - e.get("label_seconds", 0.0), e["time"]) for e in ledger)
    return {"wall": wall, "trials": len(trials), "tune_phase": phase, "trials_per_min": 60 * len(trials) / phase,
            "student_fits": len(students), "fit": fit, "labels": labels, "concurrent": concurrent,
            "in_trial": float(trials["time_total_s"].astype(float).sum()) / (phase * concurrent),
            "outside_fit": 1 - fit / (phase * concurrent),
            "outside_tune": 1 - busy / (phase * concurrent),
            "idle_tune": 1 - union_seconds(spans) / phase,
            "idle_run": 1 - union_seconds(every) / wall,
            "extractions": sum(e["stage"] == "activations" for e in ledger)}


def union_seconds(spans: list[tuple[float, float]]) -> float:
    """Total length of the union of [start, end] intervals (sorted by start)."""
    total, end = 0.0, float("-inf")
    for lo, hi in spans:
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def tell_order_args(spec: str) -> tuple[str, ...]:
    """``index``, ``finish`` or ``index:L`` as the search's ``--tell-order`` (and ``--tell-lag``) options."""
    order, _, lag = spec.partition(":")
    if order not in ("index", "finish") or (lag and (order != "index" or not lag.isdigit())):
        raise argparse.ArgumentTypeError(f"not index, finish or index:L: {spec!r}")
    return ("--tell-order", order, *(("--tell-lag", lag) if lag else ()))


def order_label(order: tuple[str, ...]) -> str:
    return order[1] + (f"-lag{order[3]}" if len(order) > 2 else "")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("W2S_DATA_DIR"))
    p.add_argument("--task", default="sst2")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--concurrent", type=int, nargs="+", default=[2],
                   help="trials at once; the cold search uses the first, then one warm search per level")
    p.add_argument("--tell-orders", nargs="+", default=["index"], type=tell_order_args,
                   help="the search's --tell-order: index, finish, or index:L for --tell-lag L; the cold search "
                        "uses the first, then one warm search per level and order")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="w2s-probe-bench-"))
    runs = [("cold", run_search(work, "cold", args, args.concurrent[0], *args.tell_orders[0]))]
    warm = [(level, order) for level in args.concurrent for order in args.tell_orders]
    for seed, (level, order) in enumerate(warm, start=1):
        label = f"warm-{level}-{order_label(order)}"
        runs.append((label, run_search(work, label, args, level, "--seed", str(seed), "--pool-seed", "0", *order)))
    print(f"probe preset, task {args.task}, {args.trials} trials, {os.cpu_count()} CPUs; cold: --tell-order "
          f"{order_label(args.tell_orders[0])}")
    print("| run | at once | wall s | extractions | Tune phase s | trials/min | student fits | fit s | label-method s "
          "| in trial functions | outside fits | outside fits and label methods | no fit running | whole run: no "
          "extraction or fit running | slot s per trial beyond the fits |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, m in runs:
        print(f"| {label} | {m['concurrent']} | {m['wall']:.0f} | {m['extractions']} | {m['tune_phase']:.0f} | "
              f"{m['trials_per_min']:.0f} | {m['student_fits']} | {m['fit']:.0f} | {m['labels']:.0f} | "
              f"{m['in_trial']:.2f} | {m['outside_fit']:.2f} | {m['outside_tune']:.2f} | {m['idle_tune']:.2f} | "
              f"{m['idle_run']:.2f} | "
              f"{(m['tune_phase'] * m['concurrent'] - m['fit'] - m['labels']) / max(1, m['student_fits']):.2f} |")
    cold, warm = runs[0][1], runs[1][1]
    print(f"warm / cold wall (at {cold['concurrent']} at once) = {warm['wall']:.0f} / {cold['wall']:.0f} = "
          f"{warm['wall'] / cold['wall']:.2f}")


if __name__ == "__main__":
    main()
