"""When a training writes its resumable checkpoint (``--checkpoint-interval-s``).

A tiny two-epoch training runs in-process under a stand-in for Ray Train's context that can
resume (``resumable``) and records which epoch reports carried a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from w2s_ray.config import TrainConfig
from w2s_ray.train.job import TrainJob
from w2s_ray.train.worker import CKPT_FILE, _LocalContext, checkpoint_due, run_job


class _ResumableContext(_LocalContext):
    resumable = True

    def __init__(self) -> None:
        super().__init__()
        self.checkpointed: list[bool] = []

    def report(self, metrics: dict, ckpt_dir: Path | None) -> None:
        super().report(metrics, ckpt_dir)
        self.checkpointed.append(ckpt_dir is not None and (ckpt_dir / CKPT_FILE).is_file())


def _job(interval_s: float) -> TrainJob:
    texts = [f"text number {i} is {'good' if i % 2 else 'bad'}" for i in range(16)]
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=8, max_length=16, seed=0)
    return TrainJob(stage="student", model="tiny-bert", kind="classify", cfg=cfg, train_inputs=texts,
                    train_targets=[float(i % 2) for i in range(16)], checkpoint_interval_s=interval_s)


def test_checkpoint_due_rule():
    assert checkpoint_due(0.0, True, 0.0)  # 0: every epoch
    assert not checkpoint_due(600.0, True, 599.0) and checkpoint_due(600.0, True, 600.0)
    assert not checkpoint_due(0.0, False, 1e9)  # nothing can resume an in-process run


@pytest.mark.parametrize("interval_s, expected", [(0.0, [True, True]), (3600.0, [False, False])])
def test_resumable_checkpoints_follow_the_interval(interval_s, expected, model_cache):
    ctx = _ResumableContext()
    run_job(_job(interval_s), ctx)
    assert [r["epoch"] for r in ctx.reports] == [1, 2]
    assert ctx.checkpointed == expected


def test_in_process_runs_write_no_checkpoint(model_cache):
    class Recording(_LocalContext):
        def __init__(self) -> None:
            super().__init__()
            self.dirs: list[Path | None] = []

        def report(self, metrics: dict, ckpt_dir: Path | None) -> None:
            self.dirs.append(ckpt_dir)

    ctx = Recording()
    run_job(_job(0.0), ctx)
    assert ctx.dirs == [None, None]

