"""Fair tuning budgets: the weak model and the ceiling are selected from as many configurations as the student.

Each reference is selected on GT validation from ``budget`` candidate configurations over the
knobs it shares with the student: ``lr`` and ``epochs``, plus ``weight_decay`` (the L2
strength) and ``layer`` in probe mode. The default budget is the student search's trial count,
capped at :data:`FINETUNE_CAP` for fine-tuning; probes (sub-second fits) are not capped.

Candidates: the preset's grid for the role first (a seeded subsample when the budget is
smaller), then seeded samples of the student space's shared knobs until the budget is met.
A sampled ``layer`` is read as a layer of the strong model and rescaled to the reference's own
depth (layer 6 of 12 is layer 3 of a 6-layer weak model).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from w2s_ray.search.space import ParamSpec, SearchSpace

FINETUNE_CAP = 8
SHARED_KNOBS: dict[str, tuple[str, ...]] = {"probe": ("lr", "epochs", "weight_decay", "layer")}
DEFAULT_SHARED: tuple[str, ...] = ("lr", "epochs")


def reference_budget(num_samples: int, mode: str, override: int | None = None) -> int:
    """Configurations per reference: ``override``, else the student's trials (capped at 8 unless probes)."""
    if override is not None:
        return int(override)
    return int(num_samples) if mode == "probe" else min(int(num_samples), FINETUNE_CAP)


def shared_knobs(mode: str) -> tuple[str, ...]:
    return SHARED_KNOBS.get(mode, DEFAULT_SHARED)


def _sample(spec: ParamSpec, rng: np.random.Generator) -> Any:
    if spec.type == "fixed":
        return spec.value
    if spec.type == "categorical":
        return spec.choices[int(rng.integers(len(spec.choices)))]
    low, high = (float(v) for v in spec.bounds)
    u = rng.random()
    value = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if spec.log else low + u * (high - low)
    if spec.step:
        value = low + round((value - low) / spec.step) * spec.step
    if spec.type == "int":
        return int(min(high, max(low, round(value))))
    return float(f"{value:.3g}")


def reference_candidates(grid: list[dict], space: SearchSpace, budget: int, seed: int, mode: str,
                         depth: int, strong_depth: int, role: str) -> list[dict]:
    """``budget`` distinct candidate overrides for one reference (see the module docstring)."""
    rng = np.random.default_rng([seed, sum(map(ord, role))])
    points = [dict(p) for p in grid]
    if budget < len(points):
        points = [points[i] for i in sorted(rng.choice(len(points), budget, replace=False))]
    knobs = [k for k in shared_knobs(mode) if k in space.params and space.params[k].type != "fixed"]
    seen = {tuple(sorted(p.items())) for p in points}
    for _ in range(50 * budget):
        if len(points) >= budget or not knobs:
            break
        point = {k: _sample(space.params[k], rng) for k in knobs}
        if "layer" in point:
            point["layer"] = int(min(depth, max(0, round(point["layer"] * depth / max(1, strong_depth)))))
        if tuple(sorted(point.items())) not in seen:
            seen.add(tuple(sorted(point.items())))
            points.append(point)
    return points or [{}]
