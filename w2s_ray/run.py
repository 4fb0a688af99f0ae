"""``python -m w2s_ray.run``: one weak-to-strong experiment (several seeds), printed and saved as JSON.

Example:
    python -m w2s_ray.run --task sst2 --data-dir ../shared/data \\
        --weak sentence-transformers/all-MiniLM-L6-v2@L1 \\
        --strong sentence-transformers/all-MiniLM-L6-v2 --loss logconf --aux-coef 0.5 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from w2s_ray.analysis.summary import format_runs, summarize_runs
from w2s_ray.cli_common import (
    OneLineParser,
    add_data_args,
    add_gap_args,
    check_dir,
    check_output_file,
    check_seeds,
    check_split_sizes,
    key_values,
    positive,
    split_sizes,
)
from w2s_ray.config import DataConfig, SplitSizes, TrainConfig
from w2s_ray.errors import UserError, cli_entry
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.experiment import ExperimentSpec, run_experiment, validate_spec
from w2s_ray.weak_labels import WEAK_LABELS, WeakLabels

DEFAULT_WEAK = "sentence-transformers/all-MiniLM-L6-v2@L1"
DEFAULT_STRONG = "sentence-transformers/all-MiniLM-L6-v2"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m w2s_ray.run", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    m = p.add_argument_group("models")
    m.add_argument("--weak", default=DEFAULT_WEAK, help="weak model spec: hub id or path, optional @Lk truncation")
    m.add_argument("--strong", default=DEFAULT_STRONG, help="strong model spec (student and ceiling)")
    m.add_argument("--bootstrap", default="", help="comma-separated intermediate models, weak→strong order")
    m.add_argument("--mode", default="finetune", choices=["finetune", "probe", "lora"], help="how every model trains")
    m.add_argument("--pooling", default="auto", choices=["auto", "mean", "cls", "last"], help="head pooling")
    m.add_argument("--lora-r", type=int, default=8, help="LoRA rank (mode lora)")
    m.add_argument("--layer", type=int, default=None,
                   help="probe mode: the hidden state the student's probe reads (default: the model's last)")
    m.add_argument("--weak-layer", type=int, default=None, help="probe mode: the weak model's hidden state")
    m.add_argument("--ceiling-layer", type=int, default=None, help="probe mode: the ceiling's hidden state")
    m.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW weight decay; in probe mode the L2 strength of every probe")
    t = p.add_argument_group("training")
    t.add_argument("--loss", default=None,
                   help="student loss (xent, logconf, product, window, entropy, kl; bt, bt_logconf for rm)")
    t.add_argument("--aux-coef", type=float, default=None, help="logconf/entropy coefficient")
    t.add_argument("--warmup-frac", type=float, default=None, help="logconf/entropy linear warmup fraction")
    t.add_argument("--loss-param", action="append", metavar="K=V", help="other loss parameters (alpha, beta, radius)")
    t.add_argument("--lr", type=float, default=5e-5, help="student learning rate")
    t.add_argument("--epochs", type=int, default=2, help="student epochs")
    t.add_argument("--weak-lr", type=float, default=2e-4, help="weak model learning rate")
    t.add_argument("--weak-epochs", type=int, default=2, help="weak model epochs")
    t.add_argument("--ceiling-lr", type=float, default=5e-5, help="ceiling learning rate")
    t.add_argument("--ceiling-epochs", type=int, default=2, help="ceiling epochs")
    t.add_argument("--batch-size", type=int, default=32, help="batch size")
    t.add_argument("--max-length", type=int, default=128, help="max tokens per text (left-truncated)")
    t.add_argument("--weak-labels", default=None, metavar="METHOD",
                   help="what the student learns from: " + ", ".join(WEAK_LABELS) + " (default: soft)")
    t.add_argument("--weak-label-param", action="append", metavar="K=V",
                   help="a parameter of the --weak-labels method (e.g. k=50, C=1.0, contamination=0.1, s2s_iters=2)")
    t.add_argument("--bootstrap-folds", type=int, default=2,
                   help="folds of B every bootstrap link and relabelling method is cross-fitted over (>= 2)")
    t.add_argument("--weak-label-transform", default="soft", choices=["soft", "hard"],
                   help="legacy: hard = --weak-labels hard")
    t.add_argument("--filter-min-conf", type=float, default=0.0,
                   help="legacy: = --weak-labels confidence_filter --weak-label-param min_conf=X")
    o = p.add_argument_group("evaluation and output")
    o.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (splits, init, order)")
    o.add_argument("--pool-seed", type=int, default=None,
                   help="every seed deals out the texts that this seed's splits hold (their cached activations "
                        "are reused); default: each seed draws its own")
    o.add_argument("--ood-task", action="append", default=[], help="also evaluate on this task's test split")
    add_gap_args(o)
    o.add_argument("--out", default="w2s_runs/run.json", help="JSON output path")
    o.add_argument("--markdown", default=None, help="also write the summary table as markdown here")
    return p


def spec_from_args(args: argparse.Namespace, seed: int) -> ExperimentSpec:
    from w2s_ray.losses import LOSS_DEFAULT
    from w2s_ray.tasks import get_task

    kind = get_task(args.task).kind
    positive("--lr", args.lr); positive("--weak-lr", args.weak_lr); positive("--ceiling-lr", args.ceiling_lr)
    positive("--epochs", args.epochs); positive("--batch-size", args.batch_size)
    positive("--weak-epochs", args.weak_epochs); positive("--ceiling-epochs", args.ceiling_epochs)
    if args.max_length < 2:
        raise UserError(f"--max-length must be >= 2 tokens, got {args.max_length}")
    positive("--min-gap", args.min_gap, allow_zero=True); positive("--val-labels", args.val_labels)
    positive("--gap-z", args.gap_z, allow_zero=True)
    loss = args.loss or LOSS_DEFAULT[kind]
    params: dict[str, Any] = key_values(args.loss_param, "--loss-param")
    if args.aux_coef is not None:
        params["aux_coef"] = args.aux_coef
    if args.warmup_frac is not None:
        params["warmup_frac"] = args.warmup_frac
    positive("--weight-decay", args.weight_decay, allow_zero=True)
    layers = (("--layer", args.layer), ("--weak-layer", args.weak_layer), ("--ceiling-layer", args.ceiling_layer))
    for flag, layer in layers:
        if layer is not None and (args.mode != "probe" or layer < 0):
            raise UserError(f"{flag} {layer}: a layer is a non-negative hidden-state index, and only for --mode probe")
    base = TrainConfig(batch_size=args.batch_size, max_length=args.max_length, mode=args.mode,
                       pooling=args.pooling, lora_r=args.lora_r, seed=seed, loss=LOSS_DEFAULT[kind],
                       weight_decay=args.weight_decay)
    return ExperimentSpec(
        data=DataConfig(task=args.task, data_dir=args.data_dir, sizes=split_sizes(args, SplitSizes()),
                        seed=seed, balance=args.balance, pool_seed=args.pool_seed,
                        task_options=key_values(args.task_option, "--task-option")),
        weak=args.weak, strong=args.strong,
        weak_cfg=base.replace(lr=args.weak_lr, epochs=args.weak_epochs, layer=args.weak_layer),
        ceiling_cfg=base.replace(lr=args.ceiling_lr, epochs=args.ceiling_epochs, layer=args.ceiling_layer),
        student_cfg=student_train_config(args, base, loss, params, kind),
        bootstrap=[m for m in args.bootstrap.split(",") if m.strip()],
        weak_labels=weak_labels_from_args(args), bootstrap_folds=args.bootstrap_folds,
        ood_tasks=list(args.ood_task), val_labels=args.val_labels, min_gap=args.min_gap,
        gap_z=args.gap_z,
    )


def student_train_config(args: argparse.Namespace, base: TrainConfig, loss: str, params: dict[str, Any],
                         kind: str) -> TrainConfig:
    """The student's flags as the flat config a search trial would give, through ``method_from_config``."""
    from w2s_ray.method import method_from_config

    config: dict[str, Any] = {"lr": args.lr, "epochs": args.epochs, "loss": loss, **params}
    if args.layer is not None:
        config["layer"] = args.layer
    return method_from_config(config, base, kind).train


def weak_labels_from_args(args: argparse.Namespace) -> WeakLabels:
    """``--weak-labels`` with its ``--weak-label-param``s, else the legacy transform / filter flags."""
    params = key_values(args.weak_label_param, "--weak-label-param")
    legacy = args.weak_label_transform != "soft" or args.filter_min_conf != 0.0
    if args.weak_labels is None:
        if params:
            raise UserError("--weak-label-param needs --weak-labels METHOD")
        if not 0 <= args.filter_min_conf < 1:
            raise UserError(f"--filter-min-conf must be in [0, 1), got {args.filter_min_conf}")
        return WeakLabels.legacy(args.weak_label_transform, args.filter_min_conf)
    if legacy:
        raise UserError("give --weak-labels or the legacy --weak-label-transform / --filter-min-conf, not both")
    return WeakLabels(args.weak_labels, params)


def check_run_args(args: argparse.Namespace) -> None:
    """The run's own options: data source, seeds, every path it writes (checked now, written after training)."""
    from w2s_ray.tasks.registry import check_data_source

    check_data_source(args.data_dir, args.task)
    check_seeds("--seed", args.seed)
    check_split_sizes(args)
    check_dir("--cache-dir", args.cache_dir or "w2s_cache")
    check_output_file("--out", args.out)
    check_output_file("--markdown", args.markdown)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_run_args(args)
    specs = [spec_from_args(args, seed) for seed in args.seed]
    validate_spec(specs[0])
    from w2s_ray.tasks import resolve_data_dir

    specs = [replace(s, data=replace(s.data, data_dir=resolve_data_dir(s.data.data_dir))) for s in specs]
    from w2s_ray.pipeline.data import prepare_data

    prepared = [prepare_data(s.data) for s in specs]  # all data errors surface before training
    cache = StageCache(args.cache_dir or "w2s_cache")
    runs = [run_experiment(s, cache, data=d) for s, d in zip(specs, prepared)]
    summary = summarize_runs(runs)
    table = format_runs(runs, summary)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"argv": sys.argv[1:] if argv is None else argv, "runs": runs, "summary": summary},
                              indent=2, sort_keys=True, default=str))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
