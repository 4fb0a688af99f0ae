"""The search's summary: baseline, best and the other selection mode's pick from the same trials.

Trains three tiny students in-process with the search's own trial code, then summarizes a
Tune-like result frame of them; no Ray needed.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.search_plan import tiny_plan
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.stages import Pipeline
from w2s_ray.search.driver import compute_shared, search_context
from w2s_ray.search.outputs import summarize_search
from w2s_ray.search.trainable import student_config, trial_metrics
from w2s_ray.train.executor import LocalExecutor, ScalingSpec

CONFIGS = [
    {"loss": "xent", "lr": 5e-4, "epochs": 1},  # the tiny space's baseline point
    {"loss": "logconf", "lr": 1e-3, "epochs": 1, "aux_coef": 0.9},
    {"loss": "xent", "lr": 1e-4, "epochs": 1},
]


class FrameGrid:
    """The one part of a Tune ``ResultGrid`` the summary reads."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def get_dataframe(self) -> pd.DataFrame:
        return self.frame.copy()


def _trials(plan, select_on: str):
    executor = LocalExecutor()
    shared = compute_shared(plan, executor)
    ctx = search_context(plan, shared, ScalingSpec())
    pipe = Pipeline(plan.data, StageCache(plan.cache_uri), executor, val_labels=plan.settings.val_labels)
    rows = []
    for i, config in enumerate(CONFIGS):
        cfg, _, policy, _ = student_config(config, ctx)
        student = pipe.student(plan.strong, cfg, shared.weak, policy, weak=shared.weak)
        rows.append({"trial_id": f"t{i}", **{f"config/{k}": v for k, v in config.items()},
                     **trial_metrics(ctx, student)})
    return ctx, pd.DataFrame(rows)


@pytest.mark.parametrize("select_on, other", [("gt", "weak"), ("weak", "gt")])
def test_summary_reports_the_other_modes_pick_from_the_same_trials(tmp_path, data_dir, model_cache, select_on, other):
    plan = tiny_plan(tmp_path, data_dir, "--select-on", select_on)
    ctx, frame = _trials(plan, select_on)
    # make the two criteria disagree deterministically: each favours a different trial
    frame["objective_gt"] = [0.1, 0.2, 0.9]
    frame["objective_weak"] = [0.3, 0.8, 0.1]
    frame["objective"] = frame[f"objective_{select_on}"]

    # every trial records the shared gap and its standard error (the same for all trials)
    assert frame["val_gap_se"].nunique() == 1 and (frame["val_gap_se"] >= 0).all()
    assert frame["val_gap"].iloc[0] == pytest.approx(ctx.shared.ceiling_val_acc - ctx.shared.weak_val_acc)
    assert frame["val_gap_se"].iloc[0] == pytest.approx(ctx.shared.gap_se)

    report = summarize_search(plan, ctx, FrameGrid(frame))

    assert set(report["rows"]) == {"baseline", "best", f"best_by_{other}"}
    assert report["rows"]["baseline"]["trial_id"] == "t0"
    best_id = "t2" if select_on == "gt" else "t1"
    other_id = "t1" if select_on == "gt" else "t2"
    assert report["rows"]["best"]["trial_id"] == best_id
    assert report["rows"][f"best_by_{other}"]["trial_id"] == other_id
    for row in report["rows"].values():
        for split in ("val", "test"):
            entry = row[split]
            assert entry["split"] == split and entry["gap_se"] >= 0
            assert (entry["pgr"] is None) == (entry["pgr_reason"] is not None)
    table = report["table"]
    assert f"| best_by_{other} | test |" in table and "ceiling − weak ± SE" in table
    assert f"best_by_{other}: the trial" in table
    assert report["best_config"]["student"] == report["rows"]["best"]["config"]
