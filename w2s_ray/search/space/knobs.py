"""What a space file may name: one table, knob -> (type, valid range, allowed values).

Types come from ``w2s_ray.config.STUDENT_KNOBS``, ranges from ``KNOB_BOUNDS``, closed value
sets from ``KNOB_VALUES``. A *parameter registry* (the loss registry today) adds a selector
knob whose values are its entries, and flat parameters owned by the entries, with the
registry's bounds; an owned parameter may only be active under entries that take it.
Adding a knob is one ``STUDENT_KNOBS`` entry (plus bounds/values here if it has any);
adding a registry is one ``ParamRegistry`` in ``registries()``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from w2s_ray.config import (
    STUDENT_KNOBS,
    TRAIN_MODES,
    WEAK_LABEL_TRANSFORMS,
    TrainConfig,
)

__all__ = [
    "KNOB_BOUNDS",
    "KNOB_VALUES",
    "PAPER_DEFAULTS",
    "Bounds",
    "Knob",
    "ParamRegistry",
    "knob_table",
    "registries",
]

# (low, high, low exclusive, high exclusive); None = unbounded.
Bounds = tuple[float | None, float | None, bool, bool]

KNOB_BOUNDS: dict[str, Bounds] = {
    "lr": (0.0, None, True, False),
    "epochs": (1, None, False, False),
    "batch_size": (1, None, False, False),
    "lora_r": (1, None, False, False),
    "bootstrap_steps": (0, None, False, False),
    "bootstrap_folds": (2, None, False, False),  # one fold would label its own training rows
    "filter_min_conf": (0.0, 1.0, False, True),  # as w2s_ray.pipeline.experiment checks: [0, 1)
    "weight_decay": (0.0, None, False, False),
    "layer": (0, None, False, False),  # the model's own layer count is checked by the search plan
}

# Knobs with a closed set of values: knob -> (what errors call a value, the values).
KNOB_VALUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mode": ("training mode", TRAIN_MODES),
    "weak_label_transform": ("weak-label transform", WEAK_LABEL_TRANSFORMS),
}

# Defaults of the paper's recipe (Burns et al. 2023), used to complete baseline points when
# a file gives no `default:` and the value lies in the searched range.
_TRAIN = TrainConfig()
PAPER_DEFAULTS: dict[str, Any] = {
    "lr": _TRAIN.lr,
    "epochs": _TRAIN.epochs,
    "batch_size": _TRAIN.batch_size,
    "mode": _TRAIN.mode,
    "lora_r": _TRAIN.lora_r,
    "bootstrap_steps": 0,
    "bootstrap_folds": 2,
    "weak_labels": "soft",
    "filter_min_conf": 0.0,
    "weak_label_transform": "soft",
}


@dataclass(frozen=True)
class ParamRegistry:
    """Entries chosen by one knob, each owning flat parameters with defaults.

    ``entries`` maps an entry name to an object with ``params`` ({param: default}) and,
    optionally, ``kinds`` (the task kinds it serves; all when absent).
    """

    knob: str  # the selector, e.g. "loss"
    noun: str  # what errors call an entry
    entries: Mapping[str, Any]
    bounds: Mapping[str, tuple[float, float]]  # param -> (low, high), inclusive, may be infinite
    default: Mapping[str, str]  # task kind -> default entry
    integer: frozenset[str] = frozenset()  # parameters that take integers
    high_open: frozenset[str] = frozenset()  # parameters whose high bound is excluded

    def for_kind(self, kind: str) -> list[str]:
        return sorted(n for n, e in self.entries.items() if kind in getattr(e, "kinds", (kind,)))

    def serves(self, entry: str, kind: str) -> bool:
        return kind in getattr(self.entries[entry], "kinds", (kind,))

    def param_names(self) -> set[str]:
        return {p for e in self.entries.values() for p in e.params}


@dataclass(frozen=True)
class Knob:
    """How one name in ``params`` is checked."""

    name: str
    type: type  # float, int or str
    bounds: Bounds | None = None
    values: tuple[str, tuple[str, ...]] | None = None  # (noun, allowed values)
    selects: ParamRegistry | None = None  # this knob picks an entry of that registry
    owner: ParamRegistry | None = None  # this parameter belongs to that registry's entries


def registries() -> tuple[ParamRegistry, ...]:
    """The parameter registries a space can draw on (imported lazily: losses import torch)."""
    from types import SimpleNamespace

    from w2s_ray import losses, weak_labels

    methods = {name: SimpleNamespace(params={p: v.default for p, v in m.params.items()})
               for name, m in weak_labels.WEAK_LABELS.items()}
    params = weak_labels.param_names()
    return (
        ParamRegistry("loss", "loss", losses.LOSSES, losses.PARAM_BOUNDS, losses.LOSS_DEFAULT),
        ParamRegistry("weak_labels", "weak-label method", methods,
                      {p: (v.low, v.high) for p, v in params.items()},
                      {"classify": weak_labels.DEFAULT_METHOD, "pairwise": weak_labels.DEFAULT_METHOD},
                      integer=frozenset(p for p, v in params.items() if v.integer),
                      high_open=frozenset(p for p, v in params.items() if v.high_open)),
    )


def knob_table(regs: tuple[ParamRegistry, ...]) -> dict[str, Knob]:
    """Every name a space may search: the student knobs, then each registry's parameters."""
    table = {
        name: Knob(name, typ, KNOB_BOUNDS.get(name), KNOB_VALUES.get(name)) for name, typ in STUDENT_KNOBS.items()
    }
    for reg in regs:
        table[reg.knob] = dataclasses.replace(table[reg.knob], selects=reg)
        for param in sorted(reg.param_names()):
            if param in table:
                continue
            lo, hi = reg.bounds.get(param, (-math.inf, math.inf))
            bounds = (lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None, False,
                      param in reg.high_open)
            table[param] = Knob(param, int if param in reg.integer else float, bounds, owner=reg)
    return table
