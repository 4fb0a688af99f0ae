"""The student method: every knob a trial (or ``run``'s flags) sets, in one typed object.

``method_from_config`` is the one place a flat config — a Tune trial's, or the one ``run``
builds from its flags — becomes a :class:`StudentMethod`: training knobs go to the
``TrainConfig`` (any ``STUDENT_KNOBS`` entry that is a ``TrainConfig`` field flows through
without further code), loss parameters to the chosen loss, weak-label parameters to the chosen
weak-label method, and the bootstrap knobs to the chain. Knobs that are neither a
``TrainConfig`` field nor in ``CHAIN_KNOBS``/``LABEL_KNOBS`` fail at import, so a new knob can
never be silently dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from w2s_ray.config import STUDENT_KNOBS, TrainConfig
from w2s_ray.errors import UserError
from w2s_ray.losses import LOSSES, get_loss
from w2s_ray.pipeline.crossfit import DEFAULT_FOLDS
from w2s_ray.weak_labels import WEAK_LABELS, WeakLabels

TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
CHAIN_KNOBS: tuple[str, ...] = ("bootstrap_steps", "bootstrap_folds")  # how the labels' chain is built
# what the student learns from
LABEL_KNOBS: tuple[str, ...] = ("weak_labels", "weak_label_transform", "filter_min_conf")
TRAIN_KNOBS: tuple[str, ...] = tuple(k for k in STUDENT_KNOBS if k in TRAIN_FIELDS and k != "loss")

_unowned = set(STUDENT_KNOBS) - TRAIN_FIELDS - set(CHAIN_KNOBS) - set(LABEL_KNOBS)
if _unowned:  # a knob in the table that nothing turns into a stage setting
    raise RuntimeError(f"student knobs with no owner in w2s_ray.method: {sorted(_unowned)}")


@dataclass(frozen=True)
class StudentMethod:
    """How one student is trained and what it learns from."""

    train: TrainConfig
    bootstrap_steps: int = 0  # links before the student
    weak_labels: WeakLabels = dataclasses.field(default_factory=WeakLabels)
    bootstrap_folds: int = DEFAULT_FOLDS  # folds of B the links and the weak-label method are cross-fitted over

    # The order ``run`` and older callers unpack: (cfg, steps, weak labels, folds).
    # Iterator[Any], not a union: callers unpack the four fields by position, each its own type.
    def __iter__(self) -> Iterator[Any]:
        return iter((self.train, self.bootstrap_steps, self.weak_labels, self.bootstrap_folds))

    @property
    def cfg(self) -> TrainConfig:
        return self.train

    @property
    def steps(self) -> int:
        return self.bootstrap_steps

    @property
    def folds(self) -> int:
        return self.bootstrap_folds


def check_loss_params(loss: str, params: Mapping[str, Any], kind: str | None) -> None:
    """The loss exists (for ``kind``) and takes each of ``params``, each a finite number in its bounds."""
    from w2s_ray.losses import check_param

    spec = get_loss(loss, kind)
    for name, value in params.items():
        if name not in spec.params:
            takers = sorted(n for n, s in LOSSES.items() if name in s.params and (kind is None or kind in s.kinds))
            hint = f"losses that take it: {', '.join(takers)}" if takers else "no loss takes it"
            raise UserError(f"loss {loss!r} has no parameter {name!r} (its parameters: "
                            f"{', '.join(sorted(spec.params)) or 'none'}); drop it or pick another loss ({hint})")
        check_param(loss, name, value)


def method_from_config(config: Mapping[str, Any], base: TrainConfig, kind: str | None = None) -> StudentMethod:
    """A flat config (knobs, loss parameters, weak-label parameters) on top of ``base``.

    Without a ``weak_labels`` knob the legacy ``weak_label_transform`` / ``filter_min_conf``
    knobs choose hard / confidence_filter, so older space files and cached students stay valid.
    A name that is no knob and no parameter of the chosen loss or weak-label method is an error
    (UserError), so a parameter given to the wrong loss never trains silently without it.
    """
    knobs = {k: v for k, v in config.items() if k in STUDENT_KNOBS}
    params = {k: v for k, v in config.items() if k not in STUDENT_KNOBS}
    loss = str(knobs.get("loss", base.loss))
    method = knobs.get("weak_labels")
    label_params = set(WEAK_LABELS[method].params) if method in WEAK_LABELS else set()
    if method is not None and method not in WEAK_LABELS:
        raise UserError(f"unknown weak-label method {method!r}; available: {', '.join(sorted(WEAK_LABELS))}")
    label_given = {k: v for k, v in params.items() if k in label_params}
    check_loss_params(loss, {k: v for k, v in params.items() if k not in label_given}, kind)
    loss_params = {k: float(v) for k, v in params.items() if k in LOSSES[loss].params}
    train = base.replace(loss=loss, loss_params=loss_params, **{k: knobs[k] for k in TRAIN_KNOBS if k in knobs})
    if method is None:
        labels = WeakLabels.legacy(str(knobs.get("weak_label_transform", "soft")),
                                   float(knobs.get("filter_min_conf", 0.0)))
    else:
        labels = WeakLabels(str(method), {k: v for k, v in params.items() if k in label_params})
    return StudentMethod(train, int(knobs.get("bootstrap_steps", 0)), labels,
                         int(knobs.get("bootstrap_folds", DEFAULT_FOLDS)))
