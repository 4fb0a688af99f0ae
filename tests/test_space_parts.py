"""The search-space package one module at a time: domains, knob table, validator, adapter."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest

from w2s_ray.config import STUDENT_KNOBS
from w2s_ray.errors import UserError
from w2s_ray.search.space.domain import (
    domain_problem,
    midpoint,
    range_distribution,
    same,
)
from w2s_ray.search.space.knobs import ParamRegistry, knob_table, registries
from w2s_ray.search.space.model import ParamSpec
from w2s_ray.search.space.optuna_adapter import define_by_run, points_to_evaluate
from w2s_ray.search.space.validate import build_space
from w2s_ray.yaml_lines import parse_yaml

# ---------------------------------------------------------------------------------------------
# domain


def test_range_distribution_is_optunas():
    dist = range_distribution("float", 1e-5, 1e-3, log=True)
    assert isinstance(dist, optuna.distributions.FloatDistribution) and dist.log
    dist = range_distribution("int", 4, 16, step=4)
    assert isinstance(dist, optuna.distributions.IntDistribution) and (dist.low, dist.high, dist.step) == (4, 16, 4)
    assert range_distribution("int", 4, 15, step=4).high == 12  # Optuna snaps high; the validator refuses it
    with pytest.raises(ValueError):
        range_distribution("float", 1.0, 0.5)


def test_domain_problem():
    f = ParamSpec("x", "float", low=0.0, high=1.0, step=0.25)
    i = ParamSpec("n", "int", low=1, high=9, step=2)
    c = ParamSpec("c", "categorical", choices=(1, "a", True))
    assert domain_problem(f, 0.5) is None and domain_problem(i, 3) is None
    assert "not on the grid" in domain_problem(f, 0.3) and "not on the grid" in domain_problem(i, 4)
    assert "outside [0.0, 1.0]" in domain_problem(f, 1.5)
    assert "not an integer" in domain_problem(i, 3.0) and "not an integer" in domain_problem(i, True)
    assert "not a number" in domain_problem(f, "0.5")
    assert domain_problem(c, True) is None and "not one of the choices" in domain_problem(c, "1")
    assert not same(True, 1) and not same("1", 1) and same(1, 1.0)


def test_midpoint_geometric_and_on_grid():
    assert midpoint(ParamSpec("x", "float", low=1e-4, high=1e-2, log=True)) == pytest.approx(1e-3)
    assert midpoint(ParamSpec("n", "int", low=4, high=16, step=4)) == 8
    assert midpoint(ParamSpec("x", "float", low=0.0, high=0.3, step=0.2)) == 0.2


# ---------------------------------------------------------------------------------------------
# knobs: one table, one entry per knob or registry


def test_knob_table_covers_student_knobs_and_loss_params():
    from w2s_ray.losses import PARAM_BOUNDS, loss_param_names
    from w2s_ray.weak_labels import param_names

    table = knob_table(registries())
    assert set(table) == set(STUDENT_KNOBS) | loss_param_names() | set(param_names())
    assert table["weak_labels"].selects.knob == "weak_labels" and table["k"].type is int
    assert table["contamination"].owner.knob == "weak_labels"
    for name, typ in STUDENT_KNOBS.items():
        assert table[name].type is typ and table[name].owner is None
    assert table["loss"].selects is not None and table["loss"].selects.knob == "loss"
    for param in loss_param_names() - set(STUDENT_KNOBS):
        knob = table[param]
        assert knob.type is float and knob.owner is table["loss"].selects
        lo, hi = PARAM_BOUNDS.get(param, (float("-inf"), float("inf")))
        assert knob.bounds[:2] == (lo if lo > float("-inf") else None, hi if hi < float("inf") else None)
    assert table["mode"].values[1] == ("finetune", "probe", "lora")
    assert table["filter_min_conf"].bounds == (0.0, 1.0, False, True)


@dataclass
class _Entry:
    params: dict[str, float] = field(default_factory=dict)


def _fake_registry() -> ParamRegistry:
    """A second registry, selected by an existing str knob (as a weak-label method registry would be)."""
    entries = {"soft": _Entry(), "hard": _Entry({"threshold": 0.5})}
    return ParamRegistry("weak_label_transform", "weak-label method", entries, {"threshold": (0.0, 1.0)},
                         {"classify": "soft", "pairwise": "soft"})


SPACE = textwrap.dedent(
    """\
    params:
      loss: {type: categorical, choices: [xent, logconf]}
      aux_coef: {type: float, low: 0.1, high: 1.0, when: {loss: logconf}}
      weak_label_transform: {type: categorical, choices: [soft, hard]}
      threshold: {type: float, low: 0.2, high: 0.9, when: {weak_label_transform: hard}}
    """
)


def _build(text: str, regs: tuple[ParamRegistry, ...]):
    path = Path("s.yaml")
    return build_space(parse_yaml(text, "s.yaml"), path, (path,), "classify", None, regs)


def test_a_new_registry_is_one_entry():
    regs = (*registries(), _fake_registry())
    space = _build(SPACE, regs)
    assert space.complete({"weak_label_transform": "hard"})["threshold"] == 0.5  # the entry's default
    assert "threshold" not in space.complete({})
    unconditioned = SPACE.replace(", when: {weak_label_transform: hard}", "")
    with pytest.raises(UserError, match=r"s\.yaml:5: params\.threshold: can be active with weak-label method 'soft'"):
        _build(unconditioned, regs)
    with pytest.raises(UserError, match=r"s\.yaml:5: params\.threshold\.high: 1\.5 is outside the valid range"):
        _build(SPACE.replace("high: 0.9", "high: 1.5"), regs)
    with pytest.raises(UserError, match=r"s\.yaml:5: params\.threshold: unknown parameter"):
        _build(SPACE, registries())  # without the registry the name is unknown


# ---------------------------------------------------------------------------------------------
# validate: range consistency as Optuna sees it


@pytest.mark.parametrize("param,fragment", [
    ("{type: float, low: 0.5, high: 0.1}", "s.yaml:2: params.warmup_frac: low (0.5) > high (0.1)"),
    ("{type: float, low: 0.1, high: 0.5, log: true, step: 0.1}",
     "s.yaml:2: params.warmup_frac.step: cannot be combined"),
    ("{type: float, low: 0.0, high: 0.5, log: true}", "s.yaml:2: params.warmup_frac: log range must be positive"),
    ("{type: float, low: 0.1, high: 0.5, step: 0.15}", "s.yaml:2: params.warmup_frac.step: high - low"),
    ("{type: float, low: 0.1, high: 0.5, step: -0.1}", "s.yaml:2: params.warmup_frac.step: must be a positive number"),
])
def test_float_range_faults(param, fragment):
    text = (f"params:\n  warmup_frac: {param[:-1]}, when: {{loss: logconf}}}}\n"
            "  loss: {type: categorical, choices: [xent, logconf]}\n")
    with pytest.raises(UserError) as info:
        _build(text, registries())
    assert str(info.value).startswith(fragment), str(info.value)


@pytest.mark.parametrize("param,fragment", [
    ("{type: int, low: 0, high: 4, log: true}", "params.epochs: an int log range needs low >= 1"),
    ("{type: int, low: 1, high: 4, log: true, step: 2}", "params.epochs.step: cannot be combined"),
    ("{type: int, low: 1, high: 4, step: 0}", "params.epochs.step: must be a positive integer"),
    ("{type: int, low: 1, high: 4, step: 1.5}", "params.epochs.step: must be a positive integer"),
])
def test_int_range_faults(param, fragment):
    with pytest.raises(UserError, match="s.yaml:2: " + fragment.replace(".", r"\.")):
        _build(f"params:\n  epochs: {param}\n", registries())


# ---------------------------------------------------------------------------------------------
# optuna_adapter


def test_adapter_suggests_active_params_and_returns_constants():
    space = _build(SPACE + "  batch_size: 16\n", (*registries(), _fake_registry()))
    trial = optuna.trial.FixedTrial({"loss": "logconf", "aux_coef": 0.3, "weak_label_transform": "soft"})
    assert define_by_run(space, trial) == {"batch_size": 16}
    assert trial.params == {"loss": "logconf", "aux_coef": 0.3, "weak_label_transform": "soft"}
    assert points_to_evaluate(space) == [{"loss": "xent", "weak_label_transform": "soft"}]
