"""A tiny fine-tune search on a real local Ray: one copy of each student's weights, pruned to baseline + top-k."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest

from tests.ray_cluster import LocalRay, tiny_space
from w2s_ray.pipeline.stage_pointer import POINTER_FILE


@pytest.mark.ray
def test_search_keeps_one_copy_of_weights_and_prunes_to_baseline_and_top_k(tmp_path, data_dir, model_cache):
    (tmp_path / "space.yaml").write_text(tiny_space(epochs=2))
    ray = LocalRay()
    ray.start_head(num_cpus=2)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "w2s_ray.search", "--task", "sst2", "--preset", "tiny",
             "--space", str(tmp_path / "space.yaml"), "--num-samples", "4", "--keep-top-k", "1",
             "--storage", str(tmp_path / "runs"), "--name", "scale", "--data-dir", data_dir,
             "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--address", ray.address,
             "--checkpoint-interval-s", "0"],  # a resumable checkpoint every epoch, each deleted once published
            env=ray.environ(), capture_output=True, text=True, timeout=1200)
    finally:
        ray.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "runs" / "scale"
    # every Ray Train run (references and students, 2 epochs each with per-epoch checkpoints) published and
    # lost its resumable checkpoint; the run records stay
    runs = list((exp / "train_runs").iterdir())
    assert runs and not [c for r in runs for c in r.glob("checkpoint_*") if c.is_dir()]
    # Tune's trial checkpoints are pointers, not weights
    tune_ckpts = [c for c in exp.glob("*/checkpoint_*") if c.is_dir()]
    assert tune_ckpts and all(sorted(p.name for p in c.iterdir()) == [POINTER_FILE] for c in tune_ckpts)
    search = json.loads((exp / "w2s" / "search.json").read_text())
    kept, pruned = search["weights"]["kept"], search["weights"]["pruned"]
    baseline_trial, best_trial = search["rows"]["baseline"]["trial_id"], search["rows"]["best"]["trial_id"]
    cache = tmp_path / "runs" / "cache" / "student"
    students = {p.name for p in cache.iterdir() if (p / "_COMPLETE").exists()}
    assert set(kept) | set(pruned) == students and not set(kept) & set(pruned)
    assert {r for reasons in kept.values() for r in reasons} >= {"baseline", "best", "top1"}
    for key in students:  # predictions stay for every student; weights only for the kept ones
        assert (cache / key / "predictions" / "val.parquet").exists()
        assert (cache / key / "checkpoint" / "model.safetensors").exists() == (key in kept)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp_id = client.get_experiment_by_name("w2s-sst2").experiment_id
    runs = client.search_runs([exp_id], max_results=100)
    [parent] = [r for r in runs if r.data.tags.get("w2s.role") == "search"]
    for label, trial in (("baseline", baseline_trial), ("best", best_trial)):
        uri = parent.data.tags[f"w2s.checkpoint.{label}"]
        [run] = [r for r in runs if r.data.tags.get("w2s.trial_id") == trial and r.data.tags.get("w2s.role") == "trial"]
        assert run.data.tags["w2s.checkpoint_uri"] == uri and label in run.data.tags["w2s.checkpoint_kept"]
        weights = cache / run.data.tags["w2s.stage_key"] / "checkpoint"
        assert uri == weights.resolve().as_uri() and (weights / "model.safetensors").exists()
    trials = [r for r in runs if r.data.tags.get("w2s.role") == "trial"]
    assert sum(r.data.tags.get("w2s.checkpoint_pruned") == "true" for r in trials) == len(
        [t for t in trials if t.data.tags.get("w2s.stage_key") in pruned])
    # MLflow holds no copy of any weights: the trial runs log the pointer, the stage runs tag the URI
    artifacts = tmp_path / "mlartifacts"
    assert not list(artifacts.rglob("*.safetensors"))
    stages = [r for r in runs if r.data.tags.get("w2s.role") == "stage"]
    assert stages and all(r.data.tags["w2s.checkpoint_uri"].startswith("file://") for r in stages)
