"""Search spaces: YAML files in ``search_spaces/`` turned into Optuna define-by-run spaces.

A space file names the weak/strong pair and the bootstrap ladder, the student knobs to
search (with conditions such as "``aux_coef`` only when ``loss`` is ``logconf``") and the
baseline points that are always measured first. Every file is validated completely at load
time; any fault becomes one ``UserError`` line ``<file>:<line>: <key>: <problem>``.

File format (see the header comment of any file in ``search_spaces/``)::

    task: sst2                   # optional; must match --task
    weak: <model>                # optional defaults, overridable by CLI/preset
    strong: <model>
    ladder: [<model>, ...]       # bootstrap intermediates, weak -> strong order; k bootstrap
                                 # steps use the first k
    params:
      lr:       {type: float, low: 1.0e-5, high: 5.0e-4, log: true, default: 5.0e-5}
      epochs:   {type: int, low: 1, high: 3}               # optional: step, log, default
      loss:     {type: categorical, choices: [xent, logconf]}
      aux_coef: {type: float, low: 0.1, high: 1.0, when: {loss: logconf}}
      batch_size: {fixed: 32}                             # a constant (or just `batch_size: 32`)
    baseline:                    # Optuna points_to_evaluate, completed with defaults
      - {loss: xent}
      - {loss: logconf, aux_coef: 0.5}
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from w2s_ray.config import STUDENT_KNOBS, TRAIN_MODES, WEAK_LABEL_TRANSFORMS, TrainConfig
from w2s_ray.errors import UserError

__all__ = [
    "ParamSpec",
    "SearchSpace",
    "load_space",
    "default_space_path",
    "spaces_dir",
    "split_config",
]

TOP_KEYS: tuple[str, ...] = ("task", "weak", "strong", "ladder", "params", "baseline")
PARAM_TYPES: tuple[str, ...] = ("float", "int", "categorical")
PARAM_FIELDS: tuple[str, ...] = ("type", "low", "high", "log", "step", "choices", "default", "when", "fixed")
_FIELDS_BY_TYPE: dict[str, frozenset[str]] = {
    "float": frozenset({"type", "low", "high", "log", "step", "default", "when"}),
    "int": frozenset({"type", "low", "high", "log", "step", "default", "when"}),
    "categorical": frozenset({"type", "choices", "default", "when"}),
    "fixed": frozenset({"fixed", "when"}),
}

# Defaults of the paper's recipe (Burns et al. 2023), used to complete baseline points when
# a file gives no `default:` and the value lies in the searched range.
_TRAIN_DEFAULTS = TrainConfig()
_PAPER_DEFAULTS: dict[str, Any] = {
    "lr": _TRAIN_DEFAULTS.lr,
    "epochs": _TRAIN_DEFAULTS.epochs,
    "batch_size": _TRAIN_DEFAULTS.batch_size,
    "mode": _TRAIN_DEFAULTS.mode,
    "lora_r": _TRAIN_DEFAULTS.lora_r,
    "bootstrap_steps": 0,
    "bootstrap_folds": 2,
    "weak_labels": "soft",
    "filter_min_conf": 0.0,
    "weak_label_transform": "soft",
}

# Knob-specific valid ranges: (low, high, low_exclusive, high_exclusive); None = unbounded.
# Loss parameters take theirs from `w2s_ray.losses.PARAM_BOUNDS`.
_Bounds = tuple[float | None, float | None, bool, bool]
_KNOB_BOUNDS: dict[str, _Bounds] = {
    "lr": (0.0, None, True, False),
    "epochs": (1, None, False, False),
    "batch_size": (1, None, False, False),
    "lora_r": (1, None, False, False),
    "bootstrap_steps": (0, None, False, False),
    "bootstrap_folds": (2, None, False, False),  # one fold would label its own training rows
    "filter_min_conf": (0.0, 1.0, False, True),  # as w2s_ray.experiment checks: [0, 1)
    "weight_decay": (0.0, None, False, False),
    "layer": (0, None, False, False),  # the model's own layer count is checked by the search plan
}

SPACES_ENV = "W2S_SPACES_DIR"


# --------------------------------------------------------------------------------------
# Data model


@dataclass(frozen=True)
class ParamSpec:
    """One searched (or constant) knob.

    ``type`` is ``float``/``int`` (range ``low..high``, optional ``log``/``step``),
    ``categorical`` (``choices``) or ``fixed`` (``value``). ``when`` maps another
    parameter to the values for which this one is active (all must hold). ``default``
    is the resolved value used to complete baseline points. ``line`` is the 1-based line
    of the parameter in its file.
    """

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    default: Any = None
    line: int = 0
    explicit_default: bool = False

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a legal value of this parameter (as Optuna would accept it)."""
        return _domain_problem(self, value) is None


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; ``params`` is in dependency order (conditions first)."""

    path: Path
    kind: str
    task: str | None
    weak: str | None
    strong: str | None
    ladder: tuple[str, ...]
    params: dict[str, ParamSpec]
    baseline: list[dict[str, Any]]
    # Per-loss defaults of loss parameters, from the loss registry at load time.
    loss_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- conditions ------------------------------------------------------------------
    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        """Whether parameter ``name`` is active given already-chosen values in ``config``."""
        spec = self.params[name]
        for dep, values in spec.when.items():
            if dep not in config or not any(_same(config[dep], v) for v in values):
                return False
        return True

    # -- Optuna ----------------------------------------------------------------------
    def define_by_run(self, trial: Any) -> dict[str, Any] | None:
        """Optuna define-by-run space for ``OptunaSearch(space=space.define_by_run)``.

        Suggests the active parameters in dependency order (a conditional parameter is
        suggested only when its ``when`` holds) and returns the active constants, or
        ``None`` when there are none (Ray's define-by-run contract).
        """
        chosen: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for name, spec in self.params.items():
            if not self.is_active(name, chosen):
                continue
            if spec.type == "fixed":
                constants[name] = chosen[name] = spec.value
            elif spec.type == "float":
                chosen[name] = trial.suggest_float(
                    name, float(spec.low), float(spec.high), step=spec.step, log=spec.log
                )
            elif spec.type == "int":
                chosen[name] = trial.suggest_int(
                    name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
                )
            else:
                chosen[name] = trial.suggest_categorical(name, list(spec.choices))
        return constants or None

    def complete(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The full trial config for a partial point: every active parameter, constants included.

        Missing active parameters get their defaults. Raises ``UserError`` for an unknown
        key, a value outside its domain or a value given for an inactive parameter.
        """
        try:
            return self._complete(point)
        except _PointError as exc:
            raise UserError(f"{_display(self.path)}: point {dict(point)!r}: {exc.key}: {exc.msg}") from None

    def points_to_evaluate(self) -> list[dict[str, Any]]:
        """Baseline points for ``OptunaSearch(points_to_evaluate=...)``.

        Each holds exactly the parameters ``define_by_run`` suggests for it (constants are
        left out: ``define_by_run`` returns them). Without a ``baseline`` in the file, the
        defaults are the baseline.
        """
        points = self.baseline or [{}]
        return [self._suggested(self._complete(p)) for p in points]

    def max_bootstrap_steps(self) -> int:
        """The most bootstrap steps any trial can ask for (0 without a bootstrap_steps param)."""
        spec = self.params.get("bootstrap_steps")
        return max(_values(spec)) if spec else 0

    def sample_defaults(self) -> dict[str, Any]:
        """The full config (constants included) with every active parameter at its default."""
        return self._complete({})

    # -- internals -------------------------------------------------------------------
    def _suggested(self, config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if self.params[k].type != "fixed"}

    def _default(self, spec: ParamSpec, config: Mapping[str, Any]) -> Any:
        loss = config.get("loss")
        if spec.name not in STUDENT_KNOBS and loss in self.loss_defaults:
            value = self.loss_defaults[loss].get(spec.name)
            if value is not None and not spec.explicit_default and spec.contains(value):
                return _as_type(spec, value)
        return spec.default

    def _complete(self, point: Mapping[str, Any]) -> dict[str, Any]:
        for key in point:
            if key not in self.params:
                raise _PointError(str(key), _unknown("parameter", str(key), self.params))
        config: dict[str, Any] = {}
        for name, spec in self.params.items():
            active = self.is_active(name, config)
            if not active:
                if name in point:
                    conds = ", ".join(f"{d} in {list(v)}" for d, v in spec.when.items())
                    raise _PointError(name, f"is inactive for this point (active only when {conds})")
                continue
            if name in point:
                value = point[name]
                problem = _domain_problem(spec, value)
                if problem:
                    raise _PointError(name, problem)
                config[name] = _as_type(spec, value)
            else:
                config[name] = spec.value if spec.type == "fixed" else self._default(spec, config)
        return config


def split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a trial config into (student knobs, method parameters: the loss's and the weak-label method's)."""
    knobs = {k: v for k, v in config.items() if k in STUDENT_KNOBS}
    loss_params = {k: v for k, v in config.items() if k not in STUDENT_KNOBS}
    return knobs, loss_params


def _weak_label_params() -> dict[str, Any]:
    from w2s_ray.weak_labels import param_names  # lazy, like the loss registry

    return param_names()


LEGACY_WEAK_LABEL_KNOBS: tuple[str, ...] = ("filter_min_conf", "weak_label_transform")


# --------------------------------------------------------------------------------------
# Locating files


def spaces_dir() -> Path:
    """The ``search_spaces/`` folder: ``$W2S_SPACES_DIR``, else beside the package (repo root
    or an editable install), else ``./search_spaces``."""
    env = os.environ.get(SPACES_ENV)
    if env:
        return Path(env)
    candidates = [Path(__file__).resolve().parents[2] / "search_spaces", Path.cwd() / "search_spaces"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    return candidates[0]


def default_space_path(task: str, kind: str = "classify") -> Path:
    """``search_spaces/<task>.yaml``, else ``search_spaces/default_<kind>.yaml``."""
    root = spaces_dir()
    for cand in (root / f"{task}.yaml", root / f"default_{kind}.yaml"):
        if cand.is_file():
            return cand
    raise UserError(
        f"no search space for task {task!r}: neither {root / f'{task}.yaml'} nor "
        f"{root / f'default_{kind}.yaml'} exists; pass --space FILE"
    )


# --------------------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict):
    """A YAML mapping that remembers the line of each key (1-based)."""

    line: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[str, int] = {}


class _Seq(list):
    """A YAML sequence that remembers the line of each item (1-based)."""

    line: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []


class _YamlFault(Exception):
    def __init__(self, line: int, msg: str) -> None:
        super().__init__(msg)
        self.line, self.msg = line, msg


class _Loader(yaml.SafeLoader):
    """SafeLoader that records lines, refuses duplicate/non-string keys and reads ``1e-5``."""


def _construct_map(loader: _Loader, node: yaml.MappingNode):
    data = _Map()
    data.line = node.start_mark.line + 1
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _YamlFault(line, f"mapping key {key!r} must be a string")
        if key in data:
            raise _YamlFault(line, f"{key}: duplicate key (first on line {data.key_lines[key]})")
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


def _construct_seq(loader: _Loader, node: yaml.SequenceNode):
    data = _Seq()
    data.line = node.start_mark.line + 1
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=True))
        data.lines.append(child.start_mark.line + 1)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
# YAML 1.1 reads `1e-5` (no dot) as a string; read it as the float everybody means.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path) -> Any:
    where = _display(path)
    if not path.exists():
        avail = sorted(p.name for p in spaces_dir().glob("*.yaml"))
        hint = f"; available in {spaces_dir()}: {', '.join(avail)}" if avail else ""
        raise UserError(f"search space file not found: {where}{hint}")
    if not path.is_file():
        raise UserError(f"search space path is not a file: {where}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read search space {where}: {exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except _YamlFault as exc:
        raise UserError(f"{where}:{exc.line}: {exc.msg}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise UserError(f"{where}:{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: invalid YAML: {' '.join(str(exc).split())}") from None


# --------------------------------------------------------------------------------------
# Validation helpers


class _PointError(Exception):
    def __init__(self, key: str, msg: str) -> None:
        super().__init__(msg)
        self.key, self.msg = key, msg


class _Ctx:
    """Builds ``<file>:<line>: <key>: <msg>`` errors."""

    def __init__(self, path: Path) -> None:
        self.where = _display(path)
        self.when_lines: dict[tuple[str, str], int] = {}  # (param, condition param) -> line

    def error(self, line: int, key: str, msg: str) -> UserError:
        return UserError(f"{self.where}:{line}: {key}: {msg}")


def _unknown(kind: str, name: str, available: Iterable[str]) -> str:
    return f"unknown {kind} {name!r}; available: {', '.join(sorted(available))}"


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool) and isinstance(a, str) == isinstance(b, str)


def _tname(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _as_type(spec: ParamSpec, value: Any) -> Any:
    if spec.type == "float":
        return float(value)
    if spec.type == "int":
        return int(value)
    if spec.type == "categorical":
        return next(c for c in spec.choices if _same(c, value))
    return value


def _domain_problem(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` is not in ``spec``'s domain, or None if it is."""
    if spec.type == "fixed":
        return None if _same(value, spec.value) else f"{value!r} differs from the fixed value {spec.value!r}"
    if spec.type == "categorical":
        if any(_same(value, c) for c in spec.choices):
            return None
        return f"{value!r} is not one of the choices {list(spec.choices)}"
    if spec.type == "int" and not _is_int(value):
        return f"{value!r} ({_tname(value)}) is not an integer"
    if spec.type == "float" and not _is_num(value):
        return f"{value!r} ({_tname(value)}) is not a number"
    if not spec.low <= value <= spec.high:
        return f"{value!r} is outside [{spec.low}, {spec.high}]"
    if spec.step:
        k = (value - spec.low) / spec.step
        if abs(k - round(k)) > 1e-8:
            return f"{value!r} is not on the grid low + k*step (low {spec.low}, step {spec.step})"
    return None


def _midpoint(spec: ParamSpec) -> Any:
    """Middle of a range (geometric for log ranges), snapped down onto the step grid."""
    low, high = spec.low, spec.high
    mid = math.sqrt(low * high) if spec.log else (low + high) / 2
    if spec.type == "int":
        step = int(spec.step or 1)
        return int(low + math.floor((mid - low) / step + 1e-9) * step)
    if spec.step:
        return float(low + round((mid - low) / spec.step) * spec.step)
    return float(mid)


# --------------------------------------------------------------------------------------
# Loading


def _loss_registry() -> Any:
    from w2s_ray import losses  # lazy: the loss registry is a separate module (imports torch)

    return losses


def load_space(path: str | os.PathLike[str], kind: str, task: str | None = None) -> SearchSpace:
    """Read and fully validate a search space for a task of ``kind`` (``classify``/``pairwise``).

    Raises ``UserError`` with one line ``<file>:<line>: <key>: <problem>`` for any fault.
    """
    path = Path(path)
    registry = _loss_registry()
    losses, loss_params = registry.LOSSES, frozenset(registry.loss_param_names())
    kinds = sorted(registry.KINDS)
    if kind not in kinds:
        raise ValueError(f"unknown task kind {kind!r}; available: {', '.join(kinds)}")
    ctx = _Ctx(path)
    doc = _read_yaml(path)
    if doc is None:
        raise UserError(f"{ctx.where}:1: search space is empty; it needs at least 'params'")
    if not isinstance(doc, _Map):
        raise UserError(f"{ctx.where}:1: search space must be a mapping with 'params', got {_tname(doc)}")
    for key, line in doc.key_lines.items():
        if key not in TOP_KEYS:
            raise ctx.error(line, key, _unknown("top-level key", key, TOP_KEYS))

    def opt_str(key: str) -> str | None:
        value = doc.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ctx.error(doc.key_lines[key], key, f"must be a non-empty string, got {value!r}")
        return value

    file_task = opt_str("task")
    if task is not None and file_task is not None and file_task != task:
        raise ctx.error(doc.key_lines["task"], "task", f"space is for task {file_task!r}, not {task!r}")
    weak, strong = opt_str("weak"), opt_str("strong")
    ladder = _parse_ladder(doc, ctx, weak, strong)

    raw_params = doc.get("params")
    if "params" not in doc or raw_params is None or (isinstance(raw_params, dict) and not raw_params):
        line = doc.key_lines.get("params", doc.line)
        raise ctx.error(line, "params", "the space has no parameters; add at least one under 'params'")
    if not isinstance(raw_params, _Map):
        raise ctx.error(doc.key_lines["params"], "params", f"must be a mapping, got {_tname(raw_params)}")

    valid_names = set(STUDENT_KNOBS) | set(loss_params) | set(_weak_label_params())
    kind_losses = sorted(n for n, s in losses.items() if kind in s.kinds)
    specs: dict[str, ParamSpec] = {}
    for name, raw in raw_params.items():
        line = raw_params.key_lines[name]
        if name not in valid_names:
            raise ctx.error(line, f"params.{name}", _unknown("parameter", name, valid_names))
        specs[name] = _parse_param(name, raw, line, ctx, kind, registry, kind_losses)

    ordered = _order_and_check_conditions(specs, ctx)
    _check_bootstrap(ordered, ladder, ctx)
    loss_defaults = _check_loss_params(ordered, losses, loss_params, ctx)
    _check_weak_label_params(ordered, ctx)

    draft = SearchSpace(
        path=path,
        kind=kind,
        task=file_task,
        weak=weak,
        strong=strong,
        ladder=ladder,
        params=ordered,
        baseline=[],
        loss_defaults=loss_defaults,
    )
    return dataclasses.replace(draft, baseline=_parse_baseline(doc, draft, ctx))


_LADDER_RE = re.compile(r"^(?P<base>.+)@L(?P<layers>[0-9]+)$")


def _parse_ladder(doc: _Map, ctx: _Ctx, weak: str | None, strong: str | None) -> tuple[str, ...]:
    raw = doc.get("ladder")
    if raw is None:
        items: list[tuple[str, str, int]] = []
    elif not isinstance(raw, _Seq):
        raise ctx.error(doc.key_lines["ladder"], "ladder", f"must be a list of model names, got {_tname(raw)}")
    else:
        items = []
        for i, (name, line) in enumerate(zip(raw, raw.lines)):
            if not isinstance(name, str) or not name.strip():
                raise ctx.error(line, f"ladder[{i}]", f"must be a model name, got {name!r}")
            items.append((f"ladder[{i}]", name, line))
    chain = []
    if weak:
        chain.append(("weak", weak, doc.key_lines["weak"]))
    chain += items
    if strong:
        chain.append(("strong", strong, doc.key_lines["strong"]))
    # A model twice in the ladder, or a chain that shrinks (only comparable for `<model>@L<n>`
    # names, the full model counting as the largest; the models code checks real sizes).
    # weak == strong alone is allowed (smoke runs use one tiny model for both).
    for j, (key_j, name_j, line_j) in enumerate(chain):
        for key_i, name_i, _ in chain[:j]:
            if name_i == name_j and (key_i, key_j) != ("weak", "strong"):
                raise ctx.error(line_j, key_j, f"model {name_j!r} appears twice in the chain (also as {key_i})")
            if name_i != name_j and _is_larger(name_i, name_j) is False:
                raise ctx.error(
                    line_j,
                    key_j,
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


_KNOB_WORDS: dict[type, str] = {float: "a float", int: "an integer", str: "a string"}
_TYPES_FOR_KNOB: dict[type, set[str]] = {
    float: {"float", "categorical", "fixed"},
    int: {"int", "categorical", "fixed"},
    str: {"categorical", "fixed"},
}


def _knob_type(name: str) -> type:
    if name in STUDENT_KNOBS:
        return STUDENT_KNOBS[name]
    param = _weak_label_params().get(name)
    return int if param is not None and param.integer else float


def _parse_param(
    name: str,
    raw: Any,
    line: int,
    ctx: _Ctx,
    kind: str,
    registry: Any,
    kind_losses: list[str],
) -> ParamSpec:
    key = f"params.{name}"
    losses = registry.LOSSES
    bounds = dict(_KNOB_BOUNDS)
    method_param = _weak_label_params().get(name)
    if method_param is not None:
        bounds[name] = (method_param.low, method_param.high if math.isfinite(method_param.high) else None, False,
                        method_param.high_open)
    elif name not in STUDENT_KNOBS:
        lo, hi = registry.PARAM_BOUNDS.get(name, (-math.inf, math.inf))
        bounds[name] = (lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None, False, False)
    knob = _knob_type(name)
    if raw is None or isinstance(raw, (_Seq, list)):
        shape = "a mapping like {type: float, low: .., high: ..} or a constant"
        raise ctx.error(line, key, f"must be {shape}, got {_tname(raw)}")
    if not isinstance(raw, _Map):  # scalar shorthand: a constant
        raw_map = _Map()
        raw_map["fixed"] = raw
        raw_map.key_lines["fixed"] = line
        raw = raw_map
    lines = raw.key_lines
    for fld, fline in lines.items():
        if fld not in PARAM_FIELDS:
            raise ctx.error(fline, key, _unknown("field", fld, PARAM_FIELDS))
    if "fixed" in raw:
        ptype = "fixed"
    elif "type" not in raw:
        raise ctx.error(line, key, f"missing 'type' (one of {', '.join(PARAM_TYPES)}) or 'fixed: <value>'")
    else:
        ptype = raw["type"]
        if ptype not in PARAM_TYPES:
            raise ctx.error(lines["type"], f"{key}.type", _unknown("type", str(ptype), PARAM_TYPES))
    for fld in raw:
        if fld not in _FIELDS_BY_TYPE[ptype]:
            raise ctx.error(lines[fld], f"{key}.{fld}", f"does not apply to a {ptype} parameter")

    # Knob type compatibility.
    allowed = _TYPES_FOR_KNOB[knob]
    if ptype not in allowed:
        raise ctx.error(
            lines.get("type", line), f"{key}.type",
            f"{name} is {_KNOB_WORDS[knob]} knob; type {ptype} not allowed "
            f"(use {' or '.join(sorted(allowed - {'fixed'}))})",
        )

    def check_value(fld: str, value: Any) -> None:
        """Type, bounds and registry checks for one value of this knob."""
        fkey, fline = f"{key}.{fld}", lines.get(fld, line)
        if knob is str:
            if not isinstance(value, str):
                raise ctx.error(fline, fkey, f"{value!r} ({_tname(value)}) is not a string")
        elif knob is int:
            if not _is_int(value):
                raise ctx.error(fline, fkey, f"{value!r} ({_tname(value)}) is not an integer")
        elif not _is_num(value):
            raise ctx.error(fline, fkey, f"{value!r} ({_tname(value)}) is not a number")
        if name == "mode" and value not in TRAIN_MODES:
            raise ctx.error(fline, fkey, _unknown("training mode", value, TRAIN_MODES))
        if name == "weak_labels":
            from w2s_ray.weak_labels import WEAK_LABELS

            if value not in WEAK_LABELS:
                raise ctx.error(fline, fkey, _unknown("weak-label method", value, WEAK_LABELS))
        if name == "weak_label_transform" and value not in WEAK_LABEL_TRANSFORMS:
            raise ctx.error(fline, fkey, _unknown("weak-label transform", value, WEAK_LABEL_TRANSFORMS))
        if name == "loss":
            if value not in losses:
                raise ctx.error(fline, fkey, _unknown("loss", value, kind_losses))
            if kind not in losses[value].kinds:
                only = "/".join(sorted(losses[value].kinds))
                raise ctx.error(
                    fline, fkey,
                    f"loss {value!r} is for {only} tasks, not {kind}; available for {kind}: {', '.join(kind_losses)}",
                )
        if name in bounds:
            lo, hi, lo_excl, hi_excl = bounds[name]
            below = lo is not None and (value <= lo if lo_excl else value < lo)
            above = hi is not None and (value >= hi if hi_excl else value > hi)
            if below or above:
                rng = (
                    f"{'(' if lo_excl or lo is None else '['}{'-inf' if lo is None else lo}, "
                    f"{'inf' if hi is None else hi}{')' if hi_excl or hi is None else ']'}"
                )
                raise ctx.error(fline, fkey, f"{value!r} is outside the valid range {rng} for {name}")

    when = _parse_when(name, raw, key, ctx)
    if ptype == "fixed":
        check_value("fixed", raw["fixed"])
        value = float(raw["fixed"]) if knob is float else raw["fixed"]
        return ParamSpec(name=name, type="fixed", value=value, when=when, default=value, line=line)

    if ptype == "categorical":
        choices = raw.get("choices")
        if "choices" not in raw:
            raise ctx.error(line, key, "categorical parameter needs 'choices: [...]'")
        if not isinstance(choices, _Seq):
            raise ctx.error(lines["choices"], f"{key}.choices", f"must be a list, got {_tname(choices)}")
        if not choices:
            raise ctx.error(lines["choices"], f"{key}.choices", "is empty; give at least one choice")
        for i, c in enumerate(choices):
            check_value("choices", c)
            if any(_same(c, d) for d in choices[:i]):
                raise ctx.error(choices.lines[i], f"{key}.choices", f"duplicate choice {c!r}")
        spec = ParamSpec(name=name, type="categorical", choices=tuple(choices), when=when, line=line)
    else:
        for fld in ("low", "high"):
            if fld not in raw:
                raise ctx.error(line, key, f"{ptype} parameter needs '{fld}'")
            bound = raw[fld]
            if ptype == "int" and not _is_int(bound):
                raise ctx.error(lines[fld], f"{key}.{fld}", f"{bound!r} ({_tname(bound)}) is not an integer")
            if not _is_num(bound):
                raise ctx.error(lines[fld], f"{key}.{fld}", f"{bound!r} ({_tname(bound)}) is not a number")
        low, high = raw["low"], raw["high"]
        if low > high:
            raise ctx.error(lines["high"], key, f"low ({low}) > high ({high})")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise ctx.error(lines["log"], f"{key}.log", f"must be true or false, got {log!r}")
        if log and low <= 0:
            raise ctx.error(lines["low"], key, f"log range must be positive, but low is {low} (log undefined)")
        if log and ptype == "int" and low < 1:
            raise ctx.error(lines["low"], key, f"an int log range needs low >= 1, got {low}")
        step = raw.get("step")
        if step is not None:
            if (ptype == "int" and not _is_int(step)) or not _is_num(step) or step <= 0:
                what = "integer" if ptype == "int" else "number"
                raise ctx.error(lines["step"], f"{key}.step", f"must be a positive {what}, got {step!r}")
            if log and (ptype == "float" or step != 1):
                raise ctx.error(lines["step"], f"{key}.step", "cannot be combined with log: true")
            k = (high - low) / step
            if abs(k - round(k)) > 1e-8:
                raise ctx.error(
                    lines["step"], f"{key}.step", f"high - low ({high - low}) is not a multiple of step ({step})"
                )
        check_value("low", low)
        check_value("high", high)
        if ptype == "float":
            low, high = float(low), float(high)
            step = float(step) if step is not None else None
        spec = ParamSpec(name=name, type=ptype, low=low, high=high, log=log, step=step, when=when, line=line)

    explicit = "default" in raw
    if explicit:
        default = raw["default"]
        problem = _domain_problem(spec, default)
        if problem:
            raise ctx.error(lines["default"], f"{key}.default", problem)
    else:
        paper = _PAPER_DEFAULTS.get(name, registry.LOSS_DEFAULT.get(kind) if name == "loss" else None)
        if method_param is not None:
            paper = method_param.default
        default = paper if paper is not None and spec.contains(paper) else (
            spec.choices[0] if ptype == "categorical" else _midpoint(spec)
        )
    return dataclasses.replace(spec, default=_as_type(spec, default), explicit_default=explicit)


def _parse_when(name: str, raw: _Map, key: str, ctx: _Ctx) -> dict[str, tuple[Any, ...]]:
    if "when" not in raw:
        return {}
    when = raw["when"]
    wkey, wline = f"{key}.when", raw.key_lines["when"]
    if not isinstance(when, _Map) or not when:
        raise ctx.error(wline, wkey, f"must be a non-empty mapping {{param: value or [values]}}, got {when!r}")
    out: dict[str, tuple[Any, ...]] = {}
    for dep, values in when.items():
        if isinstance(values, _Map):
            raise ctx.error(when.key_lines[dep], f"{wkey}.{dep}", "must be a value or a list of values")
        vals = tuple(values) if isinstance(values, _Seq) else (values,)
        if not vals:
            raise ctx.error(when.key_lines[dep], f"{wkey}.{dep}", "empty list: the parameter would never be active")
        out[dep] = vals
        ctx.when_lines[(name, dep)] = when.key_lines[dep]
    return out


def _order_and_check_conditions(specs: dict[str, ParamSpec], ctx: _Ctx) -> dict[str, ParamSpec]:
    """Check every ``when`` and return the params in dependency order (stable by file order)."""
    for name, spec in specs.items():
        for dep, values in spec.when.items():
            key, line = f"params.{name}.when.{dep}", ctx.when_lines.get((name, dep), spec.line)
            if dep == name:
                raise ctx.error(line, key, "a parameter cannot be conditioned on itself")
            if dep not in specs:
                raise ctx.error(
                    line, key, f"condition on missing parameter {dep!r}; parameters: {', '.join(specs)}"
                )
            target = specs[dep]
            if target.type == "float":
                raise ctx.error(
                    line, key, f"conditions may only refer to categorical, int or fixed parameters; {dep} is float"
                )
            for v in values:
                problem = _domain_problem(target, v)
                if problem:
                    raise ctx.error(line, key, f"condition can never hold: {problem} of {dep}")
    ordered: dict[str, ParamSpec] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise ctx.error(specs[name].line, f"params.{name}.when", f"conditions form a cycle: {cycle}")
        visiting.append(name)
        for dep in specs[name].when:
            visit(dep)
        visiting.pop()
        ordered[name] = specs[name]

    for name in sorted(specs, key=lambda n: n != "loss"):  # loss first: loss-param defaults need it
        visit(name)
    return ordered


def _values(spec: ParamSpec) -> list[Any]:
    """All values a categorical/int/fixed parameter can take."""
    if spec.type == "fixed":
        return [spec.value]
    if spec.type == "categorical":
        return list(spec.choices)
    return list(range(int(spec.low), int(spec.high) + 1, int(spec.step or 1)))


def _check_bootstrap(specs: dict[str, ParamSpec], ladder: tuple[str, ...], ctx: _Ctx) -> None:
    spec = specs.get("bootstrap_steps")
    if spec is None:
        return
    most = max(_values(spec))  # an int knob: int, categorical or fixed
    if most > len(ladder):
        raise ctx.error(
            spec.line, "params.bootstrap_steps",
            f"up to {most} bootstrap steps but the ladder has only {len(ladder)} intermediate model(s); "
            "add models under 'ladder' or lower the maximum",
        )


def _possible_losses(name: str, specs: dict[str, ParamSpec], memo: dict[str, set[Any]],
                     root: str = "loss") -> set[Any]:
    """Values of ``root`` (a loss, or a weak-label method) under which ``name`` can be active
    (given its and its parents' conditions)."""
    if name in memo:
        return memo[name]
    spec = specs[name]
    if name == root:
        result = set(_values(spec))
    elif root in spec.when:
        result = set(spec.when[root]) & _possible_losses(root, specs, memo, root)
    else:
        result = _possible_losses(root, specs, memo, root)
        for dep in spec.when:
            result &= _possible_losses(dep, specs, memo, root)
    memo[name] = result
    return result


def _check_weak_label_params(specs: dict[str, ParamSpec], ctx: _Ctx) -> None:
    """Each weak-label parameter may only be active under methods that take it; the legacy knobs
    (filter_min_conf, weak_label_transform) and ``weak_labels`` do not mix."""
    from w2s_ray.weak_labels import WEAK_LABELS

    legacy = [specs[k] for k in LEGACY_WEAK_LABEL_KNOBS if k in specs]
    if legacy and "weak_labels" in specs:
        raise ctx.error(legacy[0].line, f"params.{legacy[0].name}",
                        "is a legacy weak-label knob; with 'weak_labels' use its methods instead "
                        "(hard, confidence_filter with min_conf)")
    names = _weak_label_params()
    used = [s for s in specs.values() if s.name in names]
    if used and "weak_labels" not in specs:
        s = used[0]
        raise ctx.error(s.line, f"params.{s.name}",
                        "is a weak-label method parameter but the space has no 'weak_labels' parameter")
    memo: dict[str, set[Any]] = {}
    for spec in used:
        for method in sorted(_possible_losses(spec.name, specs, memo, "weak_labels")):
            takes = WEAK_LABELS[method].params
            if spec.name not in takes:
                raise ctx.error(
                    spec.line, f"params.{spec.name}",
                    f"can be active with weak_labels {method!r}, which has no parameter {spec.name!r} "
                    f"(its parameters: {', '.join(sorted(takes)) or 'none'}); add when: {{weak_labels: [...]}}",
                )


def _check_loss_params(
    specs: dict[str, ParamSpec], losses: Mapping[str, Any], loss_params: frozenset[str], ctx: _Ctx
) -> dict[str, dict[str, Any]]:
    """Each loss parameter may only be active under losses that take it."""
    used = [s for s in specs.values() if s.name in loss_params and s.name not in STUDENT_KNOBS]
    if used and "loss" not in specs:
        s = used[0]
        raise ctx.error(s.line, f"params.{s.name}", "is a loss parameter but the space has no 'loss' parameter")
    memo: dict[str, set[Any]] = {}
    for spec in used:
        for loss in sorted(_possible_losses(spec.name, specs, memo)):
            takes = dict(losses[loss].params)
            if spec.name not in takes:
                raise ctx.error(
                    spec.line, f"params.{spec.name}",
                    f"can be active with loss {loss!r}, which has no parameter {spec.name!r} "
                    f"(its parameters: {', '.join(sorted(takes)) or 'none'}); add when: {{loss: [...]}}",
                )
    out: dict[str, dict[str, Any]] = {}
    if "loss" in specs:
        for loss in _values(specs["loss"]):
            out[loss] = {k: v for k, v in dict(losses[loss].params).items() if _is_num(v)}
    return out


def _parse_baseline(doc: _Map, space: SearchSpace, ctx: _Ctx) -> list[dict[str, Any]]:
    raw = doc.get("baseline")
    if raw is None:
        return []
    if not isinstance(raw, _Seq):
        raise ctx.error(doc.key_lines["baseline"], "baseline", f"must be a list of points, got {_tname(raw)}")
    points: list[dict[str, Any]] = []
    completed: list[tuple[dict[str, Any], int]] = []
    for i, (point, line) in enumerate(zip(raw, raw.lines)):
        key = f"baseline[{i}]"
        if not isinstance(point, _Map):
            raise ctx.error(line, key, f"must be a mapping of parameter values, got {_tname(point)}")
        try:
            full = space._complete(point)
        except _PointError as exc:
            raise ctx.error(point.key_lines.get(exc.key, line), f"{key}.{exc.key}", exc.msg) from None
        for j, (other, other_line) in enumerate(completed):
            if other == full:
                raise ctx.error(
                    line, key, f"same point as baseline[{j}] (line {other_line}) once completed with defaults"
                )
        completed.append((full, line))
        points.append(dict(point))
    return points
