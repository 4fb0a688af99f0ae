"""A parsed space document checked completely and turned into a ``SearchSpace``.

Every fault is one ``UserError`` line ``<file>:<line>: <key>: <problem>``, the location being
that of the file holding the offending key. Range consistency (low/high/log/step) is Optuna's
(``optuna.distributions``); per-knob rules come from the table in ``knobs``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from w2s_ray.errors import UserError
from w2s_ray.search.space.domain import (
    as_type,
    domain_problem,
    is_int,
    is_num,
    midpoint,
    range_distribution,
    same,
    tname,
    unknown,
    values,
)
from w2s_ray.search.space.knobs import PAPER_DEFAULTS, Knob, ParamRegistry, knob_table
from w2s_ray.search.space.model import ParamSpec, PointError, SearchSpace
from w2s_ray.yaml_lines import LMap, Loc, LSeq, display

__all__ = ["PARAM_FIELDS", "PARAM_TYPES", "TOP_KEYS", "build_space"]

TOP_KEYS: tuple[str, ...] = ("include", "task", "weak", "strong", "ladder", "params", "baseline")
PARAM_TYPES: tuple[str, ...] = ("float", "int", "categorical")
PARAM_FIELDS: tuple[str, ...] = ("type", "low", "high", "log", "step", "choices", "default", "when", "fixed")
_FIELDS_BY_TYPE: dict[str, frozenset[str]] = {
    "float": frozenset({"type", "low", "high", "log", "step", "default", "when"}),
    "int": frozenset({"type", "low", "high", "log", "step", "default", "when"}),
    "categorical": frozenset({"type", "choices", "default", "when"}),
    "fixed": frozenset({"fixed", "when"}),
}
_KNOB_WORDS: dict[type, str] = {float: "a float", int: "an integer", str: "a string"}
_TYPES_FOR_KNOB: dict[type, set[str]] = {
    float: {"float", "categorical", "fixed"},
    int: {"int", "categorical", "fixed"},
    str: {"categorical", "fixed"},
}
_LADDER_RE = re.compile(r"^(?P<base>.+)@L(?P<layers>[0-9]+)$")


def _error(loc: Loc, key: str, msg: str) -> UserError:
    return UserError(f"{loc}: {key}: {msg}")


class _Ctx:
    """What checking one document needs beyond the document: kind, knob table, condition lines."""

    def __init__(self, kind: str, regs: tuple[ParamRegistry, ...]) -> None:
        self.kind = kind
        self.regs = regs
        self.knobs = knob_table(regs)
        self.when_locs: dict[tuple[str, str], Loc] = {}  # (param, condition param) -> loc


def build_space(
    doc: Any, path: Path, files: tuple[Path, ...], kind: str, task: str | None, regs: tuple[ParamRegistry, ...]
) -> SearchSpace:
    """Check ``doc`` (from ``w2s_ray.yaml_lines``/``include``) for a ``kind`` task and build its space."""
    where = files[0] if files else path
    if doc is None:
        raise UserError(f"{display(where)}:1: search space is empty; it needs at least 'params'")
    if not isinstance(doc, LMap):
        raise UserError(f"{display(where)}:1: search space must be a mapping with 'params', got {tname(doc)}")
    for key, loc in doc.key_locs.items():
        if key not in TOP_KEYS:
            raise _error(loc, key, unknown("top-level key", key, TOP_KEYS))
    ctx = _Ctx(kind, regs)

    def opt_str(key: str) -> str | None:
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _error(doc.key_locs[key], key, f"must be a non-empty string, got {value!r}")
        return value

    file_task = opt_str("task")
    if task is not None and file_task is not None and file_task != task:
        raise _error(doc.key_locs["task"], "task", f"space is for task {file_task!r}, not {task!r}")
    weak, strong = opt_str("weak"), opt_str("strong")
    ladder = _parse_ladder(doc, weak, strong)

    raw_params = doc.get("params")
    if "params" not in doc or raw_params is None or (isinstance(raw_params, dict) and not raw_params):
        loc = doc.key_locs.get("params", doc.loc)
        raise _error(loc, "params", "the space has no parameters; add at least one under 'params'")
    if not isinstance(raw_params, LMap):
        raise _error(doc.key_locs["params"], "params", f"must be a mapping, got {tname(raw_params)}")

    specs: dict[str, ParamSpec] = {}
    for name, raw in raw_params.items():
        loc = raw_params.key_locs[name]
        if name not in ctx.knobs:
            raise _error(loc, f"params.{name}", unknown("parameter", name, ctx.knobs))
        specs[name] = _parse_param(ctx.knobs[name], raw, loc, ctx)
    locs = {name: raw_params.key_locs[name] for name in specs}

    ordered = _order_and_check_conditions(specs, locs, ctx)
    _check_bootstrap(ordered, locs, ladder)
    owned_defaults = _check_owned_params(ordered, locs, ctx)
    _check_legacy_weak_label_knobs(ordered, locs)

    draft = SearchSpace(
        path=path, kind=kind, task=file_task, weak=weak, strong=strong, ladder=ladder, params=ordered,
        baseline=[], owned_defaults=owned_defaults, files=files,
    )
    return dataclasses.replace(draft, baseline=_parse_baseline(doc, draft))


# --------------------------------------------------------------------------------------
# Models


def _parse_ladder(doc: LMap, weak: str | None, strong: str | None) -> tuple[str, ...]:
    raw = doc.get("ladder")
    items: list[tuple[str, str, Loc]] = []
    if raw is not None and not isinstance(raw, LSeq):
        raise _error(doc.key_locs["ladder"], "ladder", f"must be a list of model names, got {tname(raw)}")
    for i, (name, loc) in enumerate(zip(raw or [], raw.locs if raw else [])):
        if not isinstance(name, str) or not name.strip():
            raise _error(loc, f"ladder[{i}]", f"must be a model name, got {name!r}")
        items.append((f"ladder[{i}]", name, loc))
    chain = [("weak", weak, doc.key_locs["weak"])] if weak else []
    chain += items
    if strong:
        chain.append(("strong", strong, doc.key_locs["strong"]))
    # A model twice in the ladder, or a chain that shrinks (only comparable for `<model>@L<n>`
    # names, the full model counting as the largest; the models code checks real sizes).
    # weak == strong alone is allowed (smoke runs use one tiny model for both).
    for j, (key_j, name_j, loc_j) in enumerate(chain):
        for key_i, name_i, _ in chain[:j]:
            if name_i == name_j and (key_i, key_j) != ("weak", "strong"):
                raise _error(loc_j, key_j, f"model {name_j!r} appears twice in the chain (also as {key_i})")
            if name_i != name_j and _is_larger(name_i, name_j) is False:
                raise _error(
                    loc_j, key_j,
                    f"{name_j!r} is not larger than {name_i!r} ({key_i}); order must be weak -> ladder -> strong",
                )
    return tuple(name for _, name, _ in items)


def _is_larger(a: str, b: str) -> bool | None:
    """Whether b is larger than a, if both are layer-truncations of one model; else None."""

    def parse(name: str) -> tuple[str, float]:
        m = _LADDER_RE.match(name)
        return (m["base"], int(m["layers"])) if m else (name, math.inf)

    (base_a, la), (base_b, lb) = parse(a), parse(b)
    if base_a != base_b:
        return None
    return lb > la


# --------------------------------------------------------------------------------------
# One parameter


def _value_problem(knob: Knob, value: Any, kind: str) -> str | None:
    """Type, allowed-value, registry and bounds checks for one value of ``knob``."""
    if knob.type is str:
        if not isinstance(value, str):
            return f"{value!r} ({tname(value)}) is not a string"
    elif knob.type is int:
        if not is_int(value):
            return f"{value!r} ({tname(value)}) is not an integer"
    elif not is_num(value):
        return f"{value!r} ({tname(value)}) is not a number"
    if knob.values and value not in knob.values[1]:
        return unknown(knob.values[0], value, knob.values[1])
    reg = knob.selects
    if reg is not None:
        if value not in reg.entries:
            return unknown(reg.noun, value, reg.for_kind(kind))
        if not reg.serves(value, kind):
            only = "/".join(sorted(reg.entries[value].kinds))
            return (f"{reg.noun} {value!r} is for {only} tasks, not {kind}; "
                    f"available for {kind}: {', '.join(reg.for_kind(kind))}")
    if knob.bounds:
        lo, hi, lo_excl, hi_excl = knob.bounds
        below = lo is not None and (value <= lo if lo_excl else value < lo)
        above = hi is not None and (value >= hi if hi_excl else value > hi)
        if below or above:
            rng = (f"{'(' if lo_excl or lo is None else '['}{'-inf' if lo is None else lo}, "
                   f"{'inf' if hi is None else hi}{')' if hi_excl or hi is None else ']'}")
            return f"{value!r} is outside the valid range {rng} for {knob.name}"
    return None


def _parse_param(knob: Knob, raw: Any, loc: Loc, ctx: _Ctx) -> ParamSpec:
    name, key = knob.name, f"params.{knob.name}"
    if raw is None or isinstance(raw, list):
        shape = "a mapping like {type: float, low: .., high: ..} or a constant"
        raise _error(loc, key, f"must be {shape}, got {tname(raw)}")
    if not isinstance(raw, LMap):  # scalar shorthand: a constant
        const = LMap(loc)
        const["fixed"], const.key_locs["fixed"] = raw, loc
        raw = const
    locs = raw.key_locs
    for fld, floc in locs.items():
        if fld not in PARAM_FIELDS:
            raise _error(floc, key, unknown("field", fld, PARAM_FIELDS))
    if "fixed" in raw:
        ptype = "fixed"
    elif "type" not in raw:
        raise _error(loc, key, f"missing 'type' (one of {', '.join(PARAM_TYPES)}) or 'fixed: <value>'")
    else:
        ptype = raw["type"]
        if ptype not in PARAM_TYPES:
            raise _error(locs["type"], f"{key}.type", unknown("type", str(ptype), PARAM_TYPES))
    for fld in raw:
        if fld not in _FIELDS_BY_TYPE[ptype]:
            raise _error(locs[fld], f"{key}.{fld}", f"does not apply to a {ptype} parameter")
    allowed = _TYPES_FOR_KNOB[knob.type]
    if ptype not in allowed:
        raise _error(
            locs.get("type", loc), f"{key}.type",
            f"{name} is {_KNOB_WORDS[knob.type]} knob; type {ptype} not allowed "
            f"(use {' or '.join(sorted(allowed - {'fixed'}))})",
        )

    def check_value(fld: str, value: Any) -> None:
        problem = _value_problem(knob, value, ctx.kind)
        if problem:
            raise _error(locs.get(fld, loc), f"{key}.{fld}", problem)

    when = _parse_when(name, raw, key, ctx)
    if ptype == "fixed":
        check_value("fixed", raw["fixed"])
        value = float(raw["fixed"]) if knob.type is float else raw["fixed"]
        return ParamSpec(name=name, type="fixed", value=value, when=when, default=value, line=loc.line)
    if ptype == "categorical":
        spec = _parse_choices(name, raw, key, loc, check_value, when)
    else:
        spec = _parse_range(name, ptype, raw, key, loc, check_value, when)

    explicit = "default" in raw
    if explicit:
        default = raw["default"]
        problem = domain_problem(spec, default)
        if problem:
            raise _error(locs["default"], f"{key}.default", problem)
    else:
        paper = knob.selects.default.get(ctx.kind) if knob.selects else PAPER_DEFAULTS.get(name)
        if paper is not None and spec.contains(paper):
            default = paper
        else:
            default = spec.choices[0] if ptype == "categorical" else midpoint(spec)
    return dataclasses.replace(spec, default=as_type(spec, default), explicit_default=explicit)


def _parse_choices(name: str, raw: LMap, key: str, loc: Loc, check_value: Any, when: dict) -> ParamSpec:
    if "choices" not in raw:
        raise _error(loc, key, "categorical parameter needs 'choices: [...]'")
    choices, cloc = raw["choices"], raw.key_locs["choices"]
    if not isinstance(choices, LSeq):
        raise _error(cloc, f"{key}.choices", f"must be a list, got {tname(choices)}")
    if not choices:
        raise _error(cloc, f"{key}.choices", "is empty; give at least one choice")
    for i, c in enumerate(choices):
        check_value("choices", c)
        if any(same(c, d) for d in choices[:i]):
            raise _error(choices.locs[i], f"{key}.choices", f"duplicate choice {c!r}")
    return ParamSpec(name=name, type="categorical", choices=tuple(choices), when=when, line=loc.line)


def _parse_range(name: str, ptype: str, raw: LMap, key: str, loc: Loc, check_value: Any, when: dict) -> ParamSpec:
    locs = raw.key_locs
    for fld in ("low", "high"):
        if fld not in raw:
            raise _error(loc, key, f"{ptype} parameter needs '{fld}'")
        bound = raw[fld]
        if ptype == "int" and not is_int(bound):
            raise _error(locs[fld], f"{key}.{fld}", f"{bound!r} ({tname(bound)}) is not an integer")
        if not is_num(bound):
            raise _error(locs[fld], f"{key}.{fld}", f"{bound!r} ({tname(bound)}) is not a number")
    low, high = raw["low"], raw["high"]
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _error(locs["log"], f"{key}.log", f"must be true or false, got {log!r}")
    step = raw.get("step")
    what = "integer" if ptype == "int" else "number"
    if step is not None and ((ptype == "int" and not is_int(step)) or not is_num(step)):
        raise _error(locs["step"], f"{key}.step", f"must be a positive {what}, got {step!r}")
    try:
        dist = range_distribution(ptype, low, high, log, step)
    except ValueError as exc:
        fld, suffix, msg = _range_fault(str(exc), ptype, low, high, step)
        raise _error(locs.get(fld, loc), key + suffix, msg) from None
    if dist.high != high:  # Optuna moved high onto the grid
        raise _error(locs["step"], f"{key}.step", f"high - low ({high - low}) is not a multiple of step ({step})")
    check_value("low", low)
    check_value("high", high)
    if ptype == "float":
        low, high = float(low), float(high)
        step = float(step) if step is not None else None
    return ParamSpec(name=name, type=ptype, low=low, high=high, log=log, step=step, when=when, line=loc.line)


def _range_fault(optuna_msg: str, ptype: str, low: Any, high: Any, step: Any) -> tuple[str, str, str]:
    """(field whose line to show, key suffix, problem) for an Optuna range ``ValueError``."""
    if "`low <= high`" in optuna_msg:
        return "high", "", f"low ({low}) > high ({high})"
    if "`low > 0`" in optuna_msg:
        return "low", "", f"log range must be positive, but low is {low} (log undefined)"
    if "`low >= 1`" in optuna_msg:
        return "low", "", f"an int log range needs low >= 1, got {low}"
    if "`step > 0`" in optuna_msg:
        return "step", ".step", f"must be a positive {'integer' if ptype == 'int' else 'number'}, got {step!r}"
    if "log" in optuna_msg and "step" in optuna_msg:
        return "step", ".step", "cannot be combined with log: true"
    return "type", "", f"invalid range: {' '.join(optuna_msg.split())}"


# --------------------------------------------------------------------------------------
# Conditions and cross-parameter rules


def _parse_when(name: str, raw: LMap, key: str, ctx: _Ctx) -> dict[str, tuple[Any, ...]]:
    if "when" not in raw:
        return {}
    when = raw["when"]
    wkey, wloc = f"{key}.when", raw.key_locs["when"]
    if not isinstance(when, LMap) or not when:
        raise _error(wloc, wkey, f"must be a non-empty mapping {{param: value or [values]}}, got {when!r}")
    out: dict[str, tuple[Any, ...]] = {}
    for dep, vals in when.items():
        if isinstance(vals, LMap):
            raise _error(when.key_locs[dep], f"{wkey}.{dep}", "must be a value or a list of values")
        vals = tuple(vals) if isinstance(vals, LSeq) else (vals,)
        if not vals:
            raise _error(when.key_locs[dep], f"{wkey}.{dep}", "empty list: the parameter would never be active")
        out[dep] = vals
        ctx.when_locs[(name, dep)] = when.key_locs[dep]
    return out


def _order_and_check_conditions(
    specs: dict[str, ParamSpec], locs: dict[str, Loc], ctx: _Ctx
) -> dict[str, ParamSpec]:
    """Check every ``when`` and return the params in dependency order (stable by file order)."""
    for name, spec in specs.items():
        for dep, vals in spec.when.items():
            key, loc = f"params.{name}.when.{dep}", ctx.when_locs.get((name, dep), locs[name])
            if dep == name:
                raise _error(loc, key, "a parameter cannot be conditioned on itself")
            if dep not in specs:
                raise _error(loc, key, f"condition on missing parameter {dep!r}; parameters: {', '.join(specs)}")
            target = specs[dep]
            if target.type == "float":
                raise _error(
                    loc, key, f"conditions may only refer to categorical, int or fixed parameters; {dep} is float"
                )
            for v in vals:
                problem = domain_problem(target, v)
                if problem:
                    raise _error(loc, key, f"condition can never hold: {problem} of {dep}")
    ordered: dict[str, ParamSpec] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            raise _error(locs[name], f"params.{name}.when", f"conditions form a cycle: {cycle}")
        visiting.append(name)
        for dep in specs[name].when:
            visit(dep)
        visiting.pop()
        ordered[name] = specs[name]

    selectors = {reg.knob for reg in ctx.regs}  # first: defaults of owned parameters need them
    for name in sorted(specs, key=lambda n: n not in selectors):
        visit(name)
    return ordered


def _check_bootstrap(specs: dict[str, ParamSpec], locs: dict[str, Loc], ladder: tuple[str, ...]) -> None:
    spec = specs.get("bootstrap_steps")
    if spec is None:
        return
    most = max(values(spec))  # an int knob: int, categorical or fixed
    if most > len(ladder):
        raise _error(
            locs["bootstrap_steps"], "params.bootstrap_steps",
            f"up to {most} bootstrap steps but the ladder has only {len(ladder)} intermediate model(s); "
            "add models under 'ladder' or lower the maximum",
        )


def _possible(selector: str, name: str, specs: dict[str, ParamSpec], memo: dict[str, set[Any]]) -> set[Any]:
    """Values of ``selector`` under which ``name`` can be active (given its and its parents' conditions)."""
    if name in memo:
        return memo[name]
    spec = specs[name]
    if name == selector:
        result = set(values(spec))
    elif selector in spec.when:
        result = set(spec.when[selector]) & _possible(selector, selector, specs, memo)
    else:
        result = _possible(selector, selector, specs, memo)
        for dep in spec.when:
            result &= _possible(selector, dep, specs, memo)
    memo[name] = result
    return result


def _check_owned_params(
    specs: dict[str, ParamSpec], locs: dict[str, Loc], ctx: _Ctx
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each registry-owned parameter may only be active under entries that take it.

    Returns the registry defaults of the owned parameters (see ``SearchSpace.owned_defaults``).
    """
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for reg in ctx.regs:
        sel = reg.knob
        used = [s for s in specs.values() if ctx.knobs[s.name].owner is reg]
        if used and sel not in specs:
            s = used[0]
            raise _error(locs[s.name], f"params.{s.name}",
                         f"is a {reg.noun} parameter but the space has no {sel!r} parameter")
        memo: dict[str, set[Any]] = {}
        for spec in used:
            for entry in sorted(_possible(sel, spec.name, specs, memo)):
                takes = dict(reg.entries[entry].params)
                if spec.name not in takes:
                    raise _error(
                        locs[spec.name], f"params.{spec.name}",
                        f"can be active with {reg.noun} {entry!r}, which has no parameter {spec.name!r} "
                        f"(its parameters: {', '.join(sorted(takes)) or 'none'}); add when: {{{sel}: [...]}}",
                    )
        if sel in specs:
            for spec in used:
                by_entry = {e: reg.entries[e].params[spec.name] for e in values(specs[sel])
                            if is_num(reg.entries[e].params.get(spec.name))}
                out[spec.name] = (sel, by_entry)
    return out


LEGACY_WEAK_LABEL_KNOBS: tuple[str, ...] = ("filter_min_conf", "weak_label_transform")


def _check_legacy_weak_label_knobs(specs: dict[str, ParamSpec], locs: dict[str, Loc]) -> None:
    """The legacy knobs (filter_min_conf, weak_label_transform) and ``weak_labels`` do not mix."""
    legacy = [k for k in LEGACY_WEAK_LABEL_KNOBS if k in specs]
    if legacy and "weak_labels" in specs:
        raise _error(locs[legacy[0]], f"params.{legacy[0]}",
                     "is a legacy weak-label knob; with 'weak_labels' use its methods instead "
                     "(hard, confidence_filter with min_conf)")


def _parse_baseline(doc: LMap, space: SearchSpace) -> list[dict[str, Any]]:
    raw = doc.get("baseline")
    if raw is None:
        return []
    if not isinstance(raw, LSeq):
        raise _error(doc.key_locs["baseline"], "baseline", f"must be a list of points, got {tname(raw)}")
    points: list[dict[str, Any]] = []
    completed: list[tuple[dict[str, Any], Loc]] = []
    for i, (point, loc) in enumerate(zip(raw, raw.locs)):
        key = f"baseline[{i}]"
        if not isinstance(point, LMap):
            raise _error(loc, key, f"must be a mapping of parameter values, got {tname(point)}")
        try:
            full = space.complete_or_raise(point)
        except PointError as exc:
            raise _error(point.key_locs.get(exc.key, loc), f"{key}.{exc.key}", exc.msg) from None
        for j, (other, other_loc) in enumerate(completed):
            if other == full:
                raise _error(loc, key,
                             f"same point as baseline[{j}] (line {other_loc.line}) once completed with defaults")
        completed.append((full, loc))
        points.append(dict(point))
    return points
