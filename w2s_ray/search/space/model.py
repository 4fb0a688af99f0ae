"""The data model: a validated search space and its parameters, conditions and defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2s_ray.config import STUDENT_KNOBS
from w2s_ray.errors import UserError
from w2s_ray.search.space.domain import as_type, domain_problem, same, unknown, values
from w2s_ray.yaml_lines import display

__all__ = ["ParamSpec", "PointError", "SearchSpace", "split_config"]


@dataclass(frozen=True)
class ParamSpec:
    """One searched (or constant) knob.

    ``type`` is ``float``/``int`` (range ``low..high``, optional ``log``/``step``),
    ``categorical`` (``choices``) or ``fixed`` (``value``). ``when`` maps another
    parameter to the values for which this one is active (all must hold). ``default``
    is the resolved value used to complete baseline points. ``line`` is the 1-based line
    of the parameter in the file that holds it.
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

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a ``float``/``int`` range (validation guarantees both are set)."""
        if self.low is None or self.high is None:
            raise TypeError(f"params.{self.name}: a {self.type} parameter has no range")
        return self.low, self.high

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a legal value of this parameter (as Optuna would accept it)."""
        return domain_problem(self, value) is None


class PointError(Exception):
    """A partial point names an unknown or inactive parameter, or a value out of its domain."""

    def __init__(self, key: str, msg: str) -> None:
        super().__init__(msg)
        self.key, self.msg = key, msg


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
    # Registry defaults of registry-owned parameters (loss parameters):
    # param -> (selector knob, {entry: default}), e.g. aux_coef -> ("loss", {"logconf": 0.5}).
    owned_defaults: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # The files the space was read from: ``path`` first, then its includes.
    files: tuple[Path, ...] = ()

    # -- conditions ------------------------------------------------------------------
    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        """Whether parameter ``name`` is active given already-chosen values in ``config``."""
        for dep, vals in self.params[name].when.items():
            if dep not in config or not any(same(config[dep], v) for v in vals):
                return False
        return True

    # -- Optuna (see w2s_ray.search.space.optuna_adapter) -----------------------------
    def define_by_run(self, trial: Any) -> dict[str, Any] | None:
        """Optuna define-by-run space for ``OptunaSearch(space=space.define_by_run)``."""
        from w2s_ray.search.space.optuna_adapter import define_by_run

        return define_by_run(self, trial)

    def points_to_evaluate(self) -> list[dict[str, Any]]:
        """Baseline points for ``OptunaSearch(points_to_evaluate=...)``."""
        from w2s_ray.search.space.optuna_adapter import points_to_evaluate

        return points_to_evaluate(self)

    # -- points ----------------------------------------------------------------------
    def complete(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The full trial config for a partial point: every active parameter, constants included.

        Missing active parameters get their defaults. Raises ``UserError`` for an unknown
        key, a value outside its domain or a value given for an inactive parameter.
        """
        try:
            return self.complete_or_raise(point)
        except PointError as exc:
            raise UserError(f"{display(self.path)}: point {dict(point)!r}: {exc.key}: {exc.msg}") from None

    def complete_or_raise(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """``complete`` raising ``PointError`` (key, problem) for the caller to place."""
        for key in point:
            if key not in self.params:
                raise PointError(str(key), unknown("parameter", str(key), self.params))
        config: dict[str, Any] = {}
        for name, spec in self.params.items():
            if not self.is_active(name, config):
                if name in point:
                    conds = ", ".join(f"{d} in {list(v)}" for d, v in spec.when.items())
                    raise PointError(name, f"is inactive for this point (active only when {conds})")
                continue
            if name in point:
                problem = domain_problem(spec, point[name])
                if problem:
                    raise PointError(name, problem)
                config[name] = as_type(spec, point[name])
            else:
                config[name] = spec.value if spec.type == "fixed" else self._default(spec, config)
        return config

    def sample_defaults(self) -> dict[str, Any]:
        """The full config (constants included) with every active parameter at its default."""
        return self.complete_or_raise({})

    def max_bootstrap_steps(self) -> int:
        """The most bootstrap steps any trial can ask for (0 without a bootstrap_steps param)."""
        spec = self.params.get("bootstrap_steps")
        return max(values(spec)) if spec else 0

    def source_text(self) -> str:
        """The text of every file the space was read from, the loaded file first."""
        files = self.files or (self.path,)
        if len(files) == 1:
            return Path(files[0]).read_text(encoding="utf-8")
        return "".join(f"# --- {display(Path(f))}\n{Path(f).read_text(encoding='utf-8')}" for f in files)

    def _default(self, spec: ParamSpec, config: Mapping[str, Any]) -> Any:
        """The file's default, unless a registry entry chosen in ``config`` has its own."""
        if spec.name in self.owned_defaults and not spec.explicit_default:
            selector, by_entry = self.owned_defaults[spec.name]
            choice = config.get(selector)
            value = by_entry.get(choice) if isinstance(choice, str) else None
            if value is not None and spec.contains(value):
                return as_type(spec, value)
        return spec.default


def split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a trial config into (student knobs, loss parameters)."""
    knobs = {k: v for k, v in config.items() if k in STUDENT_KNOBS}
    loss_params = {k: v for k, v in config.items() if k not in STUDENT_KNOBS}
    return knobs, loss_params
