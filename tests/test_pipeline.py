"""The weak → (bootstrap) → student / ceiling pipeline on tiny random models and real data."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from w2s_ray.config import DataConfig, SplitSizes, TrainConfig
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.experiment import ExperimentSpec, run_experiment
from w2s_ray.weak_labels import LabelContext, WeakLabels

TINY = "tiny-bert"
SIZES = SplitSizes(a=40, b=40, val=24, test=24)


def spec(data_dir, task="sst2", seed=0, loss=None, **kw) -> ExperimentSpec:
    kind_loss = "bt" if task == "rm" else "xent"
    base = TrainConfig(lr=1e-3, epochs=1, batch_size=16, max_length=32, seed=seed, loss=kind_loss)
    return ExperimentSpec(
        data=DataConfig(task=task, data_dir=data_dir, sizes=SIZES, seed=seed),
        weak=TINY, strong=TINY, weak_cfg=base, ceiling_cfg=base,
        student_cfg=base.replace(loss=loss or kind_loss), **kw,
    )


def test_end_to_end_report_has_all_metrics(tmp_path, data_dir, model_cache):
    report = run_experiment(spec(data_dir, loss="logconf"), StageCache(tmp_path))
    for split in ("val", "test"):
        entry = report[split]
        for key in ("weak_acc", "student_acc", "ceiling_acc", "student_weak_agreement", "misfit_kl",
                    "misfit_disagreement", "student_acc_vs_weak"):
            assert 0.0 <= entry[key] <= 1.0 or key == "misfit_kl"
        assert entry["pgr_defined"] == (entry["pgr"] is not None)
        if entry["pgr"] is None:
            assert "PGR undefined" in entry["pgr_reason"]
    assert set(report["stages"]) == {"weak", "ceiling", "student"}


def test_second_run_reuses_every_stage(tmp_path, data_dir, model_cache):
    cache = StageCache(tmp_path)
    first = run_experiment(spec(data_dir), cache)
    n = len(cache.trainings())
    assert n == 3  # weak, ceiling, student
    second = run_experiment(spec(data_dir), cache)
    assert len(cache.trainings()) == n  # nothing retrained
    assert first["val"] == second["val"]
    third = run_experiment(spec(data_dir, loss="logconf"), cache)
    assert [t["stage"] for t in cache.trainings()[n:]] == ["student"]  # only the new student
    assert third["stages"]["weak"] == first["stages"]["weak"]


def test_same_seed_gives_identical_weak_labels_and_metrics(tmp_path, data_dir, model_cache):
    a = run_experiment(spec(data_dir), StageCache(tmp_path / "a"))
    b = run_experiment(spec(data_dir), StageCache(tmp_path / "b"))
    wa = (tmp_path / "a" / "weak" / a["stages"]["weak"] / "predictions" / "b.parquet").read_bytes()
    wb = (tmp_path / "b" / "weak" / b["stages"]["weak"] / "predictions" / "b.parquet").read_bytes()
    assert wa == wb
    assert a["val"] == b["val"] and a["test"] == b["test"]
    c = run_experiment(spec(data_dir, seed=1), StageCache(tmp_path / "c"))
    assert c["data_fingerprint"] != a["data_fingerprint"]


def test_bootstrap_links_are_cached_per_chain_prefix(tmp_path, data_dir, model_cache):
    cache = StageCache(tmp_path)
    long = run_experiment(spec(data_dir, bootstrap=[TINY, TINY]), cache)
    before = len(cache.trainings())
    short = run_experiment(spec(data_dir, bootstrap=[TINY]), cache)
    assert short["stages"]["bootstrap_1"] == long["stages"]["bootstrap_1"]
    # the one-link chain reuses link 1; only its student (trained on link 1's labels) is new
    assert [t["stage"] for t in cache.trainings()[before:]] == ["student"]


def test_legacy_weak_label_knobs_filter_and_harden():
    import numpy as np

    probs = np.array([0.9, 0.55, 0.2, 0.5])
    ctx = LabelContext(probs, "classify", np.zeros(4, dtype=int))
    keep, targets = WeakLabels.legacy("hard", 0.5).apply(ctx)
    assert keep.tolist() == [0, 2] and targets.tolist() == [1.0, 0.0]
    keep, targets = WeakLabels.legacy("soft", 0.0).apply(ctx)
    assert keep.tolist() == [0, 1, 2, 3] and targets.tolist() == probs.tolist()
    # the pre-registry policy's key payload: students cached before the registry stay valid
    assert WeakLabels.legacy("hard", 0.5).key(2) == {"transform": "hard", "filter_min_conf": 0.5}
    assert WeakLabels().key(3) == {"transform": "soft", "filter_min_conf": 0.0}


def test_pairwise_rm_pipeline(tmp_path, data_dir, model_cache):
    report = run_experiment(spec(data_dir, task="rm", loss="bt_logconf"), StageCache(tmp_path))
    weak_b = pq.read_table(tmp_path / "weak" / report["stages"]["weak"] / "predictions" / "b.parquet")
    probs = weak_b["prob"].to_numpy()
    assert ((probs > 0) & (probs < 1)).all()  # soft preference probabilities
    assert 0 <= report["test"]["student_acc"] <= 1


def test_student_predictions_carry_no_test_labels(tmp_path, data_dir, model_cache):
    report = run_experiment(spec(data_dir), StageCache(tmp_path))
    table = pq.read_table(tmp_path / "student" / report["stages"]["student"] / "predictions" / "test.parquet")
    assert "label" not in table.column_names


def test_ood_evaluation_reports_accuracies_and_pgr(tmp_path, data_dir, model_cache):
    report = run_experiment(spec(data_dir, ood_tasks=["imdb"]), StageCache(tmp_path))
    ood = report["ood"]["imdb"]
    assert {"weak_acc", "student_acc", "ceiling_acc", "pgr", "pgr_defined"} <= set(ood)
    assert ood["n"] == SIZES.test


def run_cli(*args: str, env_extra: dict | None = None):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "w2s_ray.run", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_writes_json_and_table(tmp_path, data_dir, model_cache):
    out = tmp_path / "r.json"
    proc = run_cli("--task", "sst2", "--data-dir", data_dir, "--weak", TINY, "--strong", TINY, "--n-a", "32",
                   "--n-b", "32", "--n-val", "16", "--n-test", "16", "--epochs", "1", "--weak-epochs", "1",
                   "--ceiling-epochs", "1", "--seed", "0", "1", "--cache-dir", str(tmp_path / "c"),
                   "--out", str(out), "--loss", "logconf", "--aux-coef", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "| val |" in proc.stdout and "| test |" in proc.stdout
    data = json.loads(out.read_text())
    assert [r["seed"] for r in data["runs"]] == [0, 1]
    assert data["runs"][0]["loss_params"] == {"aux_coef": 0.5}


@pytest.mark.parametrize("args, needle", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--task", "sst2", "--loss", "nope"], "unknown loss 'nope'"),
    (["--task", "sst2", "--weak", "./no/such/model"], "no/such/model"),
    (["--task", "sst2", "--lr", "-1"], "--lr"),
    (["--task", "sst2", "--data-dir", "/nonexistent-w2s-dir"], "/nonexistent-w2s-dir"),
    (["--task", "sst2", "--weak", "tiny-bert@L9"], "L9"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, data_dir, args, needle):
    proc = run_cli(*args, "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o.json"),
                   env_extra={"W2S_DATA_DIR": data_dir})
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c" / "ledger.jsonl").exists() and not (tmp_path / "o.json").exists()


@pytest.mark.slow
def test_real_minilm_ladder_end_to_end(tmp_path, data_dir):
    """The real offline MiniLM (@L1 weak, 6 layers strong) on a few hundred real sst2 rows."""
    base = TrainConfig(lr=5e-5, epochs=1, batch_size=32, max_length=48, seed=0)
    s = ExperimentSpec(
        data=DataConfig(task="sst2", data_dir=data_dir, sizes=SplitSizes(a=160, b=160, val=96, test=96), seed=0),
        weak="sentence-transformers/all-MiniLM-L6-v2@L1", strong="sentence-transformers/all-MiniLM-L6-v2",
        weak_cfg=base.replace(lr=2e-4), ceiling_cfg=base, student_cfg=base,
    )
    cache = StageCache(tmp_path)
    report = run_experiment(s, cache)
    assert [t["stage"] for t in cache.trainings()] == ["weak", "ceiling", "student"]
    for split in ("val", "test"):
        assert 0.3 <= report[split]["ceiling_acc"] <= 1.0
    # the pretrained encoder has learned something real about sentiment
    assert max(report["test"]["ceiling_acc"], report["test"]["weak_acc"]) > 0.55
