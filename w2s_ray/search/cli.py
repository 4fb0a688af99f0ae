"""``python -m w2s_ray.search``: the distributed method search's command line."""

from __future__ import annotations

import argparse
import os

from w2s_ray.cli_common import (
    OneLineParser,
    add_data_args,
    add_gap_args,
    check_dir,
    check_name,
    check_seeds,
    check_split_sizes,
    positive,
)
from w2s_ray.errors import UserError
from w2s_ray.search.objective import SELECT_MODES
from w2s_ray.search.presets import PRESETS
from w2s_ray.search.settings import TELL_ORDERS, SearchSettings


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m w2s_ray.search",
        description="Search student knobs (losses, bootstrap steps, learning rates, modes) to maximize "
                    "validation PGR for one task. Every training runs under Ray Train; Optuna (TPE) drives "
                    "Ray Tune; MLflow records the search, its shared stages and every trial.",
    )
    add_data_args(p)
    s = p.add_argument_group("search")
    s.add_argument("--preset", default=None,
                   help="sizes and models: " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items())
                   + " (default: probe without GPUs, paper with)")
    s.add_argument("--space", default=None, help="search-space YAML (default: search_spaces/<task>.yaml)")
    s.add_argument("--weak", default=None, help="override the weak model (else space file, else preset)")
    s.add_argument("--strong", default=None, help="override the strong model")
    s.add_argument("--num-samples", type=int, default=None, help="number of trials (default: preset's)")
    s.add_argument("--reference-budget", type=int, default=None,
                   help="configurations the weak model and the ceiling are each selected from on GT validation "
                        "(default: --num-samples, capped at 8 unless the references are probes)")
    s.add_argument("--max-concurrent", type=int, default=None,
                   help="trials running at once (default: the preset's; probe: one per CPU of this machine)")
    s.add_argument("--tell-order", choices=TELL_ORDERS, default="index",
                   help="index: TPE samples trial k once trials 0..k-c have ended (c = --max-concurrent) and sees "
                        "exactly their results, so a seed fixes the configs searched at any concurrency; a slot "
                        "may wait for an older trial (default). finish: tell results as trials end, no waiting, "
                        "not reproducible with concurrent trials")
    s.add_argument("--tell-lag", type=int, default=None,
                   help="with --tell-order index: sample trial k once trials 0..k-L have ended (default L = "
                        "--max-concurrent). A fixed L makes the configs a function of the seed and L alone, on any "
                        "concurrency; L above --max-concurrent lets free slots run ahead of a slow trial, and TPE "
                        "samples each config from L - 1 fewer results")
    s.add_argument("--asha", action="store_true", help="ASHA early stopping (stopped trials are PRUNED in Optuna)")
    s.add_argument("--asha-grace-epochs", type=float, default=1.0,
                   help="with --asha: epochs before ASHA's first rung, 1/k for a whole k (1, 0.5, 0.25, ...); below 1 "
                        "each student reports k times per epoch, so unpromising trials stop before their first "
                        "epoch ends (default 1)")
    s.add_argument("--select-on", choices=SELECT_MODES, default="gt",
                   help="gt: validation PGR from GT val labels (default); weak: no-GT mode, agreement with weak "
                        "labels first, confidence only as a tie-break, collapsed students last (favours imitation)")
    add_gap_args(s)
    s.add_argument("--confirm-seeds", type=int, default=None,
                   help="retrain weak, ceiling, the baselines and the best config on K more seeds; report test PGR "
                        "mean ± std and the paired best-vs-baseline difference (default: the preset's; probe: 5)")
    s.add_argument("--pool-seed", type=int, default=None,
                   help="deal out the texts that this seed's splits hold, reshuffled by --seed (reuses their "
                        "cached activations)")
    s.add_argument("--fresh-pool", action="store_true",
                   help="confirmation seeds draw a fresh pool of texts (default: reshuffle the same pool among "
                        "A, B, val and test, so cached activations are reused)")
    s.add_argument("--seed", type=int, default=0, help="seed for splits, models and the TPE sampler")
    o = p.add_argument_group("storage, resume and tracking")
    o.add_argument("--name", default=None, help="search name (default: <task>-<preset>-s<seed>); rerunning resumes it")
    o.add_argument("--storage", default=os.environ.get("W2S_STORAGE", "w2s_runs"),
                   help="run storage: local dir or s3:// / gs:// (Tune results, checkpoints, outputs)")
    o.add_argument("--resume", action="store_true", help="continue an interrupted search (requires it to exist)")
    o.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    o.add_argument("--experiment", default=None, help="MLflow experiment (default: w2s-<task>)")
    o.add_argument("--mlflow-flush-timeout-s", type=float, default=30.0,
                   help="when the search ends, how long each final flush retries MLflow writes an unreachable "
                        "tracking server refused; what is left is written to mlflow_unlogged.json and replayed "
                        "by --resume (default 30)")
    o.add_argument("--checkpoints", choices=["all", "best", "none"], default="best",
                   help="student checkpoints logged to MLflow (a pointer to the stage cache and a "
                        "w2s.checkpoint_uri tag: the weights are stored once, in the cache)")
    o.add_argument("--keep-top-k", type=int, default=3,
                   help="when the search ends keep the weights of the baselines and the K best students by the "
                        "objective; the others' weights are deleted (their predictions and metrics stay)")
    r = p.add_argument_group("Ray")
    r.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster address (default: local)")
    r.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per training")
    r.add_argument("--use-gpu", action="store_true", default=None, help="train on GPUs")
    r.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs per Train worker (default: the preset's on a cluster; locally the node's CPUs shared "
                        "by the concurrent trainings)")
    r.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs per worker; fractions share a card (default: the preset's)")
    r.add_argument("--max-failures", type=int, default=3, help="retries of a failed training or trial")
    r.add_argument("--checkpoint-interval-s", type=float, default=600.0,
                   help="a training writes a resumable checkpoint (weights and optimizer state) at an epoch's end "
                        "only once this many seconds of its work would otherwise be lost to a failure; 0 = every "
                        "epoch. Shorter trainings are cheaper to redo than to checkpoint")
    r.add_argument("--shared-concurrency", type=int, default=None,
                   help="shared stages (weak and ceiling candidates) trained at once, each its own Ray Train run "
                        "(default: 2 on a local machine, measured faster than 1 on 2 cores; on a cluster every "
                        "candidate at once)")
    return p


def parse_settings(argv: list[str] | None = None) -> SearchSettings:
    """The command line (``sys.argv`` when None) as typed settings; usage errors exit 2."""
    return SearchSettings.from_namespace(build_parser().parse_args(argv))


def check_search_args(settings: SearchSettings) -> None:
    """The search's own numbers, name and paths; called first by ``plan_search``."""
    from w2s_ray.tasks.registry import check_data_source

    check_seeds("--seed", settings.seed)
    check_split_sizes(settings)
    positive("--cpus-per-worker", settings.cpus_per_worker)
    positive("--gpus-per-worker", settings.gpus_per_worker)
    positive("--reference-budget", settings.reference_budget)
    positive("--tell-lag", settings.tell_lag)
    if settings.tell_lag is not None and settings.tell_order != "index":
        raise UserError("--tell-lag applies only with --tell-order index")
    check_name("--name", settings.name)
    check_dir("--cache-dir", settings.cache_dir)
    check_data_source(settings.data_dir, settings.task)
