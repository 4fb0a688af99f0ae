"""A finished search's ``search.json`` and ``trials.parquet``, checked to hold what the plots and
the report read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from w2s_ray.errors import UserError

__all__ = ["load_search", "model_sizes"]


def load_search(path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The search's ``search.json`` and ``trials.parquet``, checked to hold what the plots read.

    UserError (one line naming the file and what is wrong) if it is not a complete finished search.
    """
    out = path / "w2s"
    if not (out / "search.json").is_file() or not (out / "trials.parquet").is_file():
        raise UserError(f"{path} is not a finished search (no w2s/search.json and w2s/trials.parquet); "
                        "pass a search's storage path <storage>/<name>")
    fix = "rerun or resume the search to rewrite it"
    try:
        search = json.loads((out / "search.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{out / 'search.json'} is not valid JSON ({_first_line(exc)}); {fix}") from None
    _check_search(search, out / "search.json", fix)
    try:
        trials = pd.read_parquet(out / "trials.parquet")
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise UserError(f"{out / 'trials.parquet'} is not a readable parquet file ({_first_line(exc)}); "
                        f"{fix}") from None
    needed = ["trial_id", "objective"] + ([] if search.get("confirm", {}).get("stats") else ["val_pgr"])
    missing = [c for c in needed if c not in trials.columns]
    if missing:
        raise UserError(f"{out / 'trials.parquet'} has no column {missing[0]!r}; {fix}")
    if trials.empty:
        raise UserError(f"{out / 'trials.parquet'} holds no trials; {fix}")
    return search, trials


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_NUMBER = (int, float)


def _check_search(search: Any, file: Path, fix: str) -> None:
    """Every key the plots read exists with the right type (UserError naming the first that does not)."""
    def need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        value = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            got = "missing" if not isinstance(obj, dict) or key not in obj else f"a {type(value).__name__}"
            raise UserError(f"{file}: {where}{key} is {got}, not the expected "
                            f"{getattr(kind, '__name__', 'number')}; {fix}")
        return value

    if not isinstance(search, dict):
        raise UserError(f"{file} holds a {type(search).__name__}, not a search summary object; {fix}")
    need(search, "name", str, "")
    need(search, "task", str, "")
    refs = need(search, "references", dict, "")
    for ref in ("weak", "ceiling"):
        need(need(refs, ref, dict, "references."), "model", str, f"references.{ref}.")
    links = refs.get("bootstrap", [])
    if not isinstance(links, list):
        raise UserError(f"{file}: references.bootstrap is a {type(links).__name__}, not a list; {fix}")
    for i, link in enumerate(links):
        need(link, "model", str, f"references.bootstrap[{i}].")
    rows = need(search, "rows", dict, "")
    if not rows:
        raise UserError(f"{file}: rows is empty (no finished student to plot); {fix}")
    for label in rows:
        test = need(rows, label, dict, "rows.")
        test = need(test, "test", dict, f"rows.{label}.")
        for metric in ("weak_acc", "ceiling_acc", "student_acc"):
            need(test, metric, _NUMBER, f"rows.{label}.test.")
    stats = search.get("confirm", {}).get("stats") if isinstance(search.get("confirm"), dict) else None
    if stats:
        need(search["confirm"], "seeds", int, "confirm.")
        for name, entry in stats.items():
            pgr = need(entry if isinstance(entry, dict) else {}, "pgr", dict, f"confirm.stats.{name}.")
            for key in ("mean", "std"):
                need(pgr, key, _NUMBER, f"confirm.stats.{name}.pgr.")


def model_sizes(search: dict[str, Any]) -> dict[str, int]:
    """Parameter count of each model the search names: weak, ceiling, bootstrap_<i>."""
    from w2s_ray.models import model_size

    refs = search["references"]
    models = {"weak": refs["weak"]["model"], "ceiling": refs["ceiling"]["model"]}
    for i, link in enumerate(refs.get("bootstrap", []), start=1):
        models[f"bootstrap_{i}"] = link["model"]
    return {name: model_size(spec) for name, spec in models.items()}
