"""Bootstrap chains: one recipe for every link, tuned per link on GT validation like the references.

``run`` and ``search`` both build their chain with :func:`run_chain`. Each link is cross-fitted
on the previous link's labels (:meth:`w2s_ray.pipeline.stages.Pipeline.link`) and its learning rate
(in probe mode also its L2 ``weight_decay``) is chosen on GT validation from a small grid
around a size-scaled centre: the learning rate interpolated, in log space, between the weak
model's and the ceiling's learning rates by the link's parameter count (a link as large as the
weak model starts from the weak model's rate, one as large as the strong model from the
ceiling's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from w2s_ray.analysis.metrics import accuracy
from w2s_ray.config import TrainConfig
from w2s_ray.pipeline.crossfit import DEFAULT_FOLDS
from w2s_ray.pipeline.stages import Pipeline, StageResult, labelled_val

LR_FACTORS: tuple[float, ...] = (0.5, 1.0, 2.0)
PROBE_WEIGHT_DECAYS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass(frozen=True)
class LinkRecipe:
    """How every link trains: a base config, the references' (size, lr) anchors and the fold count."""

    base: TrainConfig
    anchors: tuple[tuple[int, float], tuple[int, float]]  # (parameters, lr) of the weak model and the ceiling
    folds: int = DEFAULT_FOLDS
    lr_factors: tuple[float, ...] = LR_FACTORS
    weight_decays: tuple[float, ...] = PROBE_WEIGHT_DECAYS  # probe mode only


@dataclass
class Chain:
    """A finished chain: its links (prefix k is ``links[:k]``) and each link's selection table."""

    links: list[StageResult] = field(default_factory=list)
    selection: list[dict[str, Any]] = field(default_factory=list)


def link_recipe(base: TrainConfig, weak: str, weak_lr: float, strong: str, strong_lr: float,
                folds: int = DEFAULT_FOLDS) -> LinkRecipe:
    """The recipe anchored on the weak model's and the ceiling's learning rates."""
    from w2s_ray.models import model_size

    return LinkRecipe(base, ((model_size(weak), float(weak_lr)), (model_size(strong), float(strong_lr))), int(folds))


def link_lr(recipe: LinkRecipe, size: int) -> float:
    """Centre learning rate for a link of ``size`` parameters (log-log interpolation, clamped)."""
    (small, lr_small), (big, lr_big) = recipe.anchors
    if big <= small:
        return math.sqrt(lr_small * lr_big)
    t = min(1.0, max(0.0, (math.log(size) - math.log(small)) / (math.log(big) - math.log(small))))
    return math.exp((1 - t) * math.log(lr_small) + t * math.log(lr_big))


def link_grid(recipe: LinkRecipe, model: str) -> list[dict[str, float]]:
    """The link's candidates: lr factors around its centre (x L2 strengths in probe mode)."""
    from w2s_ray.models import model_size

    centre = link_lr(recipe, model_size(model))
    lrs = [float(f"{centre * f:.3g}") for f in recipe.lr_factors]
    if recipe.base.mode == "probe":
        return [{"lr": lr, "weight_decay": wd} for lr in lrs for wd in recipe.weight_decays]
    return [{"lr": lr} for lr in lrs]


def run_chain(pipe: Pipeline, ladder: list[str], weak: StageResult, recipe: LinkRecipe) -> Chain:
    """Links M1..Mk, each cross-fitted on the previous one's labels and tuned on GT validation."""
    chain = Chain()
    val = labelled_val(pipe.data.splits["val"].labels, pipe.val_labels)
    known = ~np.isnan(val)
    source = weak
    for index, model in enumerate(ladder, start=1):
        best: tuple[float, StageResult, dict] | None = None
        table = []
        for overrides in link_grid(recipe, model):
            link = pipe.link(index, model, recipe.base.replace(**overrides), source, recipe.folds)
            acc = accuracy(link.probs("val")[known], val[known])
            table.append({**overrides, "val_acc": acc, "key": link.key})
            if best is None or acc > best[0]:
                best = (acc, link, overrides)
        assert best is not None
        _, link, chosen = best
        final = link.metrics["final"]
        chain.links.append(link)
        chain.selection.append({"link": index, "model": model, "key": link.key, "chosen": chosen,
                                "folds": recipe.folds, "budget": len(table), "candidates": table,
                                "val_acc": final.get("val_acc"), "test_acc": final.get("test_acc"),
                                "labels_acc": final.get("b_acc")})
        source = link
    return chain
