"""Loading task records from the Hugging Face hub with `datasets.load_dataset`.

Used when no data dir is given (neither `data_dir` nor `W2S_DATA_DIR`). This path needs the
network, so the offline test suite cannot run it; it is kept small on purpose.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets

from w2s_ray.errors import UserError


@dataclass(frozen=True)
class HubSource:
    """Where a task's rows live on the hub: `load_dataset(hf_id, config, data_dir=..., split=...)`.

    `splits` are the *labelled* splits pooled into the task's data (unlabelled test splits are
    left out). `limit` caps the rows read per split (streamed), for very large datasets.
    """

    hf_id: str
    config: str | None = None
    splits: tuple[str, ...] = ("train",)
    data_dir: str | None = None
    limit: int | None = None


NO_DATA_DIR_FIX = "pass --data-dir DIR (laid out like shared/data) or set W2S_DATA_DIR"


def require_hub() -> None:
    """UserError in one line, within seconds, when the hub cannot serve data (offline or unreachable).

    Without it, `datasets` retries for half a minute and logs a line per retry.
    """
    from w2s_ray.models.arch import hub_offline, hub_reachable

    if hub_offline():
        raise UserError(f"no data dir given and the Hugging Face hub is off (HF_HUB_OFFLINE is set); {NO_DATA_DIR_FIX}")
    if not hub_reachable():
        raise UserError(f"no data dir given and the Hugging Face hub is unreachable; {NO_DATA_DIR_FIX}")


def hub_records(src: HubSource) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield `(row_id, source_name, record)` for every row of the source's splits.

    The CLIs call `require_hub` first (via `check_data_source`); library callers get the
    `datasets` error itself, in one line.
    """
    prefix = "/".join(p for p in (src.hf_id, src.config, src.data_dir) if p)
    for split in src.splits:
        name = f"{prefix}:{split}"
        try:
            ds = datasets.load_dataset(
                src.hf_id, src.config, data_dir=src.data_dir, split=split, streaming=src.limit is not None
            )
            rows = list(itertools.islice(ds, src.limit) if src.limit is not None else ds)
        except Exception as exc:  # network, auth, missing config: all mean "cannot load it here"
            reason = " ".join(str(exc).split())
            raise UserError(
                f"could not load {name} from the Hugging Face hub ({type(exc).__name__}: {reason}); "
                "pass a local data dir (--data-dir or W2S_DATA_DIR) instead"
            ) from None
        for i, rec in enumerate(rows):
            yield f"hub:{name}:{i}", name, dict(rec)
