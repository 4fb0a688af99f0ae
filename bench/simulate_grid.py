"""Simulate the paper's grid on an autoscaling GPU cluster: the search's policy against naive runs.

Grid: tasks × weak/strong pairs of the gpt2 ladder × trials per search. Every training is a
Ray Train run on one GPU. The simulator replays the search's policy:

* shared stages per search: the weak and the ceiling candidates (``--lrs`` each) all at once
  (``--shared-concurrency`` on a cluster: every candidate), then the bootstrap links, one chain
  depth at a time; a stage already in the stage cache is reused (content-addressed, so the
  same weak model on the same task is shared by every pair that uses it); a stage another
  search is training is waited for (``--no-cross-search-dedup``: trained again, as two drivers
  racing on the cache would);
* then Tune: ``--trials`` students, ``--max-concurrent`` at a time, each using the links of
  its bootstrap depth (drawn round-robin over the pair's possible depths), ASHA stopping a trial
  after its first epoch unless it ranks in the top 1/``--asha-rf`` at that rung;
* an autoscaler adds ``--gpus-per-node`` nodes (up to ``--max-gpus``) for queued trainings;
  a node is billed from its request, ready ``--node-start-s`` later, and released after
  ``--idle-s`` idle.

Cost rule for one training on one GPU: Ray Train start-up (``--startup-s``, measured here) +
loading the weights (4 bytes/param at ``--load-gbps``) + c_gpu · N · (train tokens + predicted
tokens / 3) + per-epoch checkpoints (12 bytes/param: weights and AdamW moments, at
``--write-gbps``), where N is the non-embedding parameter count and tokens = examples ×
``--tokens``. c_cpu, seconds per parameter-token, is measured here for MiniLM and mpnet
(``bench/stage_costs.json``, their mean); c_gpu = c_cpu / ``--gpu-speedup``.

Naive: each trial its own experiment (weak, ceiling, its links and the student, one learning
rate each, no ASHA), packed perfectly onto GPUs (no autoscaler idle or boot time): a lower bound.

    python bench/simulate_grid.py
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GPT2 = {  # non-embedding parameters (Kaplan et al.'s N)
    "gpt2": 85_000_000, "gpt2-medium": 302_000_000, "gpt2-large": 708_000_000, "gpt2-xl": 1_475_000_000,
}
TOTAL_PARAMS = {"gpt2": 124_000_000, "gpt2-medium": 355_000_000, "gpt2-large": 774_000_000, "gpt2-xl": 1_558_000_000}
LADDER = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]
PAIRS = [("gpt2", "gpt2-medium"), ("gpt2", "gpt2-large"), ("gpt2", "gpt2-xl"),
         ("gpt2-medium", "gpt2-xl"), ("gpt2-large", "gpt2-xl")]
COSTS = Path(__file__).with_name("stage_costs.json")


@dataclass
class Spec:
    """The grid, the cluster and the cost model."""

    tasks: int = 22
    pairs: list[tuple[str, str]] = field(default_factory=lambda: list(PAIRS))
    trials: int = 64
    max_concurrent: int = 8
    lrs: int = 2  # fair-reference candidates per weak and ceiling
    max_bootstrap: int = 2
    n_train: int = 10_000
    n_predict_b: int = 10_000
    n_val: int = 2_000
    n_test: int = 5_000
    tokens: int = 256  # mean tokens per example (512 at most)
    ref_epochs: int = 2
    student_epochs: int = 2
    asha: bool = True
    asha_rf: int = 4
    asha_grace_epochs: float = 1.0  # the search reports once per epoch: ASHA's first rung is epoch 1
    startup_s: float = 20.0
    load_gbps: float = 1.0
    write_gbps: float = 1.0
    c_gpu: float = 1e-13  # seconds per (non-embedding parameter × token)
    params: dict[str, int] = field(default_factory=lambda: dict(GPT2))
    total_params: dict[str, int] = field(default_factory=lambda: dict(TOTAL_PARAMS))
    ladder: list[str] = field(default_factory=lambda: list(LADDER))
    max_gpus: int = 256
    gpus_per_node: int = 8
    node_start_s: float = 300.0
    idle_s: float = 60.0
    cross_search_dedup: bool = True


def train_seconds(spec: Spec, model: str, train: int, epochs: float, predict: int, monitor: int) -> float:
    """One training's GPU seconds under the cost rule (see the module docstring)."""
    n = spec.params[model]
    compute = spec.c_gpu * n * spec.tokens * (train * epochs + (predict + monitor * epochs) / 3)
    load = 4 * spec.total_params[model] / (spec.load_gbps * 1e9)
    checkpoints = epochs * 12 * spec.total_params[model] / (spec.write_gbps * 1e9)
    return spec.startup_s + load + compute + checkpoints


def stage_seconds(spec: Spec, role: str, model: str, epochs: int | None = None) -> float:
    val, test = spec.n_val, spec.n_test
    if role == "weak":
        return train_seconds(spec, model, spec.n_train, spec.ref_epochs, spec.n_predict_b + val + test, val)
    if role == "ceiling":
        return train_seconds(spec, model, spec.n_train, spec.ref_epochs, val + test, val)
    if role == "link":
        return train_seconds(spec, model, spec.n_train, spec.ref_epochs, spec.n_predict_b + val + test, val)
    if role == "student":
        return train_seconds(spec, model, spec.n_train, spec.student_epochs, val + test, val)
    if role == "student_stopped":  # ASHA stops it after its first epoch: no final predictions
        return train_seconds(spec, model, spec.n_train, spec.asha_grace_epochs, 0, val)
    raise ValueError(role)


def links_of(spec: Spec, weak: str, strong: str) -> list[str]:
    """The bootstrap chain between weak and strong (ladder models strictly between), at most max_bootstrap."""
    inside = spec.ladder[spec.ladder.index(weak) + 1: spec.ladder.index(strong)]
    return inside[: spec.max_bootstrap]


def naive_gpu_seconds(spec: Spec) -> float:
    total = 0.0
    for weak, strong in spec.pairs:
        chain = links_of(spec, weak, strong)
        for trial in range(spec.trials):
            depth = trial % (len(chain) + 1)
            total += (stage_seconds(spec, "weak", weak) + stage_seconds(spec, "ceiling", strong)
                      + sum(stage_seconds(spec, "link", m) for m in chain[:depth])
                      + stage_seconds(spec, "student", strong))
    return total * spec.tasks


class Cluster:
    """Event loop, GPU nodes and the autoscaler."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.queue: list[tuple[float, Callable[[], None]]] = []  # (duration, on_done)
        self.nodes: list[dict[str, Any]] = []
        self.busy_gpu_s = 0.0
        self.trainings = 0

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._events, (t, next(self._seq), fn))

    def submit(self, seconds: float, on_done: Callable[[], None]) -> None:
        self.queue.append((seconds, on_done))
        self._dispatch()

    def _dispatch(self) -> None:
        for node in self.nodes:
            while self.queue and node["ready"] and not node["released"] and node["busy"] < self.spec.gpus_per_node:
                seconds, on_done = self.queue.pop(0)
                node["busy"] += 1
                node["idle_since"] = None
                self.busy_gpu_s += seconds
                self.trainings += 1
                self.at(self.now + seconds, self._finisher(node, on_done))
        self._scale()

    def _finisher(self, node: dict, on_done: Callable[[], None]) -> Callable[[], None]:
        def done() -> None:
            node["busy"] -= 1
            if node["busy"] == 0:
                node["idle_since"] = self.now
                self.at(self.now + self.spec.idle_s, lambda: self._maybe_release(node))
            on_done()
            self._dispatch()
        return done

    def _scale(self) -> None:
        g = self.spec.gpus_per_node
        live = [n for n in self.nodes if not n["released"]]
        spare = sum(g - n["busy"] for n in live)
        need = len(self.queue) - spare
        room = self.spec.max_gpus // g - len(live)
        for _ in range(max(0, min(room, math.ceil(need / g)))):
            node = {"start": self.now, "ready": False, "released": False, "busy": 0, "idle_since": None, "end": None}
            self.nodes.append(node)
            self.at(self.now + self.spec.node_start_s, lambda n=node: self._ready(n))

    def _ready(self, node: dict) -> None:
        node["ready"] = True
        node["idle_since"] = self.now
        self.at(self.now + self.spec.idle_s, lambda: self._maybe_release(node))
        self._dispatch()

    def _maybe_release(self, node: dict) -> None:
        if (not node["released"] and node["busy"] == 0 and node["idle_since"] is not None
                and self.now - node["idle_since"] >= self.spec.idle_s - 1e-9):
            node["released"], node["end"] = True, self.now

    def run(self) -> None:
        while self._events:
            self.now, _, fn = heapq.heappop(self._events)
            fn()
        for node in self.nodes:
            if not node["released"]:
                node["released"], node["end"] = True, self.now

    def billed_gpu_s(self) -> float:
        return sum((n["end"] - n["start"]) * self.spec.gpus_per_node for n in self.nodes)


class StageStore:
    """The content-addressed stage cache shared by every search, with in-flight stages."""

    def __init__(self, cluster: Cluster, dedup: bool) -> None:
        self.cluster = cluster
        self.dedup = dedup
        self.done: set[tuple] = set()
        self.waiting: dict[tuple, list[Callable[[], None]]] = {}
        self.trained: dict[str, int] = {}

    def need(self, key: tuple, seconds: float, then: Callable[[], None]) -> None:
        """Call ``then`` once the stage ``key`` is in the cache, training it unless it is (being) trained."""
        if key in self.done:
            then()
            return
        if self.dedup and key in self.waiting:
            self.waiting[key].append(then)
            return
        self.trained[key[1]] = self.trained.get(key[1], 0) + 1
        if self.dedup:
            self.waiting[key] = [then]

        def finished() -> None:
            self.done.add(key)
            for fn in self.waiting.pop(key, []) if self.dedup else [then]:
                fn()
        self.cluster.submit(seconds, finished)


def all_of(n: int, then: Callable[[], None]) -> Callable[[], None]:
    """A callback that calls ``then`` on its n-th call."""
    left = [n]

    def one() -> None:
        left[0] -= 1
        if left[0] == 0:
            then()
    if n == 0:
        then()
    return one


def simulate(spec: Spec) -> dict[str, Any]:
    """Replay the grid under the search's policy; GPU-hours, times and utilisation."""
    cluster = Cluster(spec)
    store = StageStore(cluster, spec.cross_search_dedup)
    first_result: dict[tuple, float] = {}
    finished: dict[tuple, float] = {}

    def search(task: int, weak: str, strong: str) -> None:
        cell = (task, weak, strong)
        chain = links_of(spec, weak, strong)

        def tune() -> None:
            started = itertools.count()
            done = [0]
            rung: list[int] = []

            def launch() -> None:
                i = next(started)
                if i >= spec.trials:
                    return
                stopped = spec.asha and i >= spec.asha_rf and i % spec.asha_rf != 0
                role = "student_stopped" if stopped else "student"

                def end() -> None:
                    done[0] += 1
                    rung.append(i)
                    if not stopped:
                        first_result.setdefault(cell, cluster.now)
                    if done[0] == spec.trials:
                        finished[cell] = cluster.now
                    launch()
                cluster.submit(stage_seconds(spec, role, strong), end)
            for _ in range(min(spec.max_concurrent, spec.trials)):
                launch()

        def links(depth: int = 0) -> None:
            if depth == len(chain):
                tune()
                return
            key = (task, "link", tuple(chain[: depth + 1]), weak)
            store.need(key, stage_seconds(spec, "link", chain[depth]), lambda: links(depth + 1))

        refs = all_of(2 * spec.lrs, links)
        for lr in range(spec.lrs):
            store.need((task, "weak", weak, lr), stage_seconds(spec, "weak", weak), refs)
            store.need((task, "ceiling", strong, lr), stage_seconds(spec, "ceiling", strong), refs)

    for task in range(spec.tasks):
        for weak, strong in spec.pairs:
            search(task, weak, strong)
    cluster.run()
    naive = naive_gpu_seconds(spec)
    billed = cluster.billed_gpu_s()
    return {
        "gpu_hours": billed / 3600, "naive_gpu_hours": naive / 3600, "ratio": billed / naive,
        "busy_gpu_hours": cluster.busy_gpu_s / 3600, "utilisation": cluster.busy_gpu_s / billed if billed else 0.0,
        "first_table_h": max(first_result.values()) / 3600, "final_table_h": max(finished.values()) / 3600,
        "trainings": cluster.trainings, "shared_trained": store.trained, "nodes_started": len(cluster.nodes),
    }


def measured_c_cpu(path: Path = COSTS) -> tuple[float, dict[str, float]]:
    """Seconds per (non-embedding parameter × token) on this machine, from ``stage_costs.json``."""
    data = json.loads(path.read_text())
    per = {}
    for name, m in data["models"].items():
        tokens = data["max_length"] * (m["train_examples"] * m["epochs"] + m["predict_examples"] / 3)
        per[name] = m["seconds"] / (m["non_embedding_params"] * tokens)
    return sum(per.values()) / len(per), per


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Spec()
    for name in ("tasks", "trials", "max_concurrent", "lrs", "max_bootstrap", "tokens", "max_gpus",
                 "gpus_per_node", "asha_rf"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("startup_s", "load_gbps", "write_gbps", "node_start_s", "idle_s", "asha_grace_epochs"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(d, name))
    p.add_argument("--gpu-speedup", type=float, default=2000.0,
                   help="GPU / this machine's CPU throughput on the same training (assumption)")
    p.add_argument("--no-asha", action="store_true")
    p.add_argument("--no-cross-search-dedup", action="store_true")
    args = p.parse_args()
    c_cpu, per = measured_c_cpu()
    kw = {k: v for k, v in vars(args).items() if k in Spec.__dataclass_fields__}
    spec = Spec(**kw, c_gpu=c_cpu / args.gpu_speedup, asha=not args.no_asha,
                cross_search_dedup=not args.no_cross_search_dedup)
    out = simulate(spec)
    print("c_cpu measured here: " + ", ".join(f"{k} {v:.3e}" for k, v in per.items())
          + f" s/(param·token); mean {c_cpu:.3e}; c_gpu = c_cpu / {args.gpu_speedup:g} = {spec.c_gpu:.3e}")
    print(f"grid: {spec.tasks} tasks x {len(spec.pairs)} pairs x {spec.trials} trials, {spec.max_gpus} GPUs "
          f"({spec.gpus_per_node}/node, {spec.node_start_s:g} s node start), max {spec.max_concurrent} trials/search, "
          f"ASHA {'rf ' + str(spec.asha_rf) if spec.asha else 'off'}, cross-search dedup {spec.cross_search_dedup}")
    print(f"GPU-hours {out['gpu_hours']:.0f} (busy {out['busy_gpu_hours']:.0f}) vs naive {out['naive_gpu_hours']:.0f}: "
          f"ratio {out['ratio']:.3f}")
    print(f"first complete PGR table after {out['first_table_h']:.1f} h; all searches done after "
          f"{out['final_table_h']:.1f} h; GPU utilisation {out['utilisation']:.2f}; {out['trainings']} trainings, "
          f"{out['nodes_started']} node starts; shared stages trained: {out['shared_trained']}")


if __name__ == "__main__":
    main()
