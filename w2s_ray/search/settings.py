"""The search's settings as one typed, frozen object, built once from the command line.

Every ``python -m w2s_ray.search`` option is one field here (``tests/test_settings.py`` checks
that the parser's destinations and these fields are the same set), so nothing below the CLI
reads an ``argparse.Namespace``. The defaults live in the parser alone.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

TELL_ORDERS = ("index", "finish")  # when TPE learns a trial's result: see search.searcher.W2SOptunaSearch


def resolve_tell_lag(tell_order: str, tell_lag: int | None, max_concurrent: int) -> int | None:
    """The lag the searcher holds results back by: ``tell_lag`` or, by default, the concurrency;
    ``None`` (tell as trials finish) under ``tell_order="finish"``."""
    if tell_order not in TELL_ORDERS:
        raise ValueError(f"tell_order must be one of {TELL_ORDERS}, not {tell_order!r}")
    if tell_lag is not None and (tell_order != "index" or tell_lag < 1):
        raise ValueError(f"tell_lag is a positive int with tell_order='index', not {tell_lag!r} with {tell_order!r}")
    return (tell_lag or max_concurrent) if tell_order == "index" else None


@dataclass(frozen=True)
class SearchSettings:
    """What the user asked for; ``plan_search`` resolves what they left open into the plan."""

    # data
    task: str
    data_dir: str | None
    task_option: tuple[str, ...]
    n_a: int | None
    n_b: int | None
    n_val: int | None
    n_test: int | None
    balance: bool
    val_labels: int | None
    cache_dir: str | None
    # search
    preset: str | None
    space: str | None
    weak: str | None
    strong: str | None
    num_samples: int | None
    reference_budget: int | None
    max_concurrent: int | None
    tell_order: str
    tell_lag: int | None
    asha: bool
    asha_grace_epochs: float
    select_on: str
    min_gap: float
    gap_z: float
    confirm_seeds: int | None
    pool_seed: int | None
    fresh_pool: bool
    seed: int
    # storage, resume and tracking
    name: str | None
    storage: str
    resume: bool
    tracking_uri: str | None
    experiment: str | None
    mlflow_flush_timeout_s: float
    checkpoints: str
    keep_top_k: int
    # Ray
    address: str | None
    num_workers: int
    use_gpu: bool | None
    cpus_per_worker: float | None
    gpus_per_worker: float | None
    max_failures: int
    checkpoint_interval_s: float
    shared_concurrency: int | None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> SearchSettings:
        """The parsed command line as settings; an option without a field is a programming error."""
        values = dict(vars(args))
        names = {f.name for f in fields(cls)}
        if set(values) != names:
            raise TypeError(f"search options without a settings field: {sorted(set(values) - names)}; "
                            f"settings fields without an option: {sorted(names - set(values))}")
        values["task_option"] = tuple(values["task_option"] or ())
        return cls(**values)
