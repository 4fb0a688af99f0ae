"""When a search ends: keep the weights of its baselines and its top-k students, drop the rest.

Every student's predictions and metrics stay in the stage cache (the summary, reports and
reruns read only those); only ``checkpoint/`` (the weights) of the students nobody kept is
deleted, and a ``weights_pruned.json`` note takes its place. Leftover Ray Train checkpoints of
trainings that never published (trials stopped by ASHA, failed ones) are deleted too.

Searches share one cache, so a student one search keeps may be a trial of another (a rerun of
the same seed reaches the same students). Each search marks what it keeps with
``kept_by/<search id>.json`` in the entry, and no search deletes weights another one marked:
the first search's best checkpoint stays reachable from its MLflow run.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.stage_pointer import weights_uri

PRUNED_NOTE = "weights_pruned.json"
KEPT_BY = "kept_by"  # one marker file per search that keeps the entry's weights


@dataclass
class PruneReport:
    """What the prune step kept and deleted."""

    kept: dict[str, list[str]] = field(default_factory=dict)  # student key -> why (baseline, best, top-k)
    pruned: list[str] = field(default_factory=list)  # student keys whose weights were deleted
    kept_by_others: list[str] = field(default_factory=list)  # not kept here, but another search keeps them
    freed_bytes: int = 0  # student weights and leftover Ray Train checkpoints deleted
    trial_keys: dict[str, str] = field(default_factory=dict)  # trial id -> student key

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "pruned": self.pruned, "kept_by_others": self.kept_by_others,
                "freed_bytes": self.freed_bytes}


def kept_students(frame: pd.DataFrame, rows: dict[str, dict], keep_top_k: int) -> dict[str, list[str]]:
    """Student key -> reasons to keep its weights: the summary's baseline and best rows, and the
    ``keep_top_k`` finished trials with the highest objective."""
    keys = dict(zip(frame["trial_id"], frame["student_key"])) if "student_key" in frame else {}
    kept: dict[str, list[str]] = {}
    for label, row in rows.items():
        if (label == "best" or label.startswith("baseline")) and keys.get(row.get("trial_id")):
            kept.setdefault(keys[row["trial_id"]], []).append(label)
    if "final" in frame and "objective" in frame and keep_top_k > 0:
        finished = frame[(frame["final"].fillna(0) == 1) & frame["student_key"].notna()]
        scores = finished["objective"].astype(float).map(lambda v: -math.inf if math.isnan(v) else v)
        ranked = finished.assign(_score=scores).sort_values("_score", ascending=False, kind="stable")
        for rank, key in enumerate(dict.fromkeys(ranked["student_key"]), start=1):
            if rank > keep_top_k:
                break
            kept.setdefault(key, []).append(f"top{rank}")
    return kept


def prune_students(cache_uri: str, frame: pd.DataFrame, rows: dict[str, dict], keep_top_k: int,
                   search_id: str) -> PruneReport:
    """Mark the students :func:`kept_students` keeps as kept by ``search_id``; delete the weights of
    this search's other students unless another search marked them."""
    cache = StageCache(cache_uri)
    report = PruneReport(kept=kept_students(frame, rows, keep_top_k))
    if "student_key" in frame:
        report.trial_keys = {str(t): str(k) for t, k in zip(frame["trial_id"], frame["student_key"])
                             if isinstance(k, str)}
    for key, reasons in report.kept.items():
        _mark_kept(cache, "student", key, search_id, reasons)
    for key in sorted(set(report.trial_keys.values()) - set(report.kept)):
        if _kept_by(cache, "student", key) - {search_id}:
            report.kept_by_others.append(key)
            continue
        freed = _drop_weights(cache, "student", key)
        if freed is not None:
            report.pruned.append(key)
            report.freed_bytes += freed
    return report


def _mark_kept(cache: StageCache, kind: str, key: str, search_id: str, reasons: list[str]) -> None:
    """Write ``kept_by/<search_id>.json`` into the entry (and its remote copy): one file per search,
    so concurrent searches never rewrite each other's marks."""
    entry = cache.get(kind, key)
    if entry is None:
        return
    body = json.dumps({"search_id": search_id, "reasons": reasons, "time": time.time()}).encode()
    (entry / KEPT_BY).mkdir(exist_ok=True)
    (entry / KEPT_BY / f"{search_id}.json").write_bytes(body)
    remote_fs = getattr(cache, "_fs", None)
    if remote_fs is not None:
        remote = cache._remote(kind, key)
        remote_fs.create_dir(f"{remote}/{KEPT_BY}", recursive=True)
        with remote_fs.open_output_stream(f"{remote}/{KEPT_BY}/{search_id}.json") as out:
            out.write(body)


def _kept_by(cache: StageCache, kind: str, key: str) -> set[str]:
    """The ids of the searches that marked this entry's weights as kept (local and remote marks)."""
    entry = cache.path(kind, key)
    ids = {p.stem for p in (entry / KEPT_BY).glob("*.json")}
    remote_fs = getattr(cache, "_fs", None)
    if remote_fs is not None:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(f"{cache._remote(kind, key)}/{KEPT_BY}", allow_not_found=True)
        ids |= {i.base_name.removesuffix(".json") for i in remote_fs.get_file_info(selector)}
    return ids


def _drop_weights(cache: StageCache, kind: str, key: str) -> int | None:
    """Delete one entry's ``checkpoint/`` (locally and in a remote root); None if it had none."""
    entry = cache.get(kind, key)
    if entry is None or not (entry / "checkpoint").is_dir():
        return None
    freed = sum(p.stat().st_size for p in (entry / "checkpoint").rglob("*") if p.is_file())
    note = {"time": time.time(), "weights_uri": weights_uri(cache.uri, kind, key),
            "reason": "not a baseline nor in the search's top-k (--keep-top-k)"}
    (entry / PRUNED_NOTE).write_text(json.dumps(note, indent=1))
    shutil.rmtree(entry / "checkpoint", ignore_errors=True)
    remote_fs = getattr(cache, "_fs", None)
    if remote_fs is not None:
        import pyarrow.fs as pafs

        remote = cache._remote(kind, key)
        if remote_fs.get_file_info(f"{remote}/checkpoint").type != pafs.FileType.NotFound:
            remote_fs.delete_dir(f"{remote}/checkpoint")
        with remote_fs.open_output_stream(f"{remote}/{PRUNED_NOTE}") as out:
            out.write((entry / PRUNED_NOTE).read_bytes())
    return freed


def drop_leftover_checkpoints(train_storage: str) -> int:
    """Delete Ray Train checkpoints under every run of ``train_storage`` (runs that never published
    leave theirs); returns the bytes freed. Call only once no training of the search runs."""
    import pyarrow.fs as pafs

    from w2s_ray.train.executor import drop_checkpoints

    try:
        fs, root = pafs.FileSystem.from_uri(train_storage if "://" in train_storage
                                            else f"file://{_abs(train_storage)}")
        runs = [i.path for i in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
                if i.type == pafs.FileType.Directory]
    except OSError:
        return 0
    return sum(drop_checkpoints(run, fs) or 0 for run in runs)


def _abs(path: str) -> str:
    from pathlib import Path

    return str(Path(path).expanduser().resolve())
