"""`python -m w2s_ray.run --mode probe`: every role a probe on cached activations, OOD included."""

from __future__ import annotations

import json

from w2s_ray.config import DataConfig, SplitSizes, TrainConfig
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.experiment import ExperimentSpec, run_experiment
from w2s_ray.run import main as run_main

SIZES = SplitSizes(a=40, b=40, val=24, test=24)


def probe_spec(data_dir, **kw) -> ExperimentSpec:
    base = TrainConfig(lr=1e-2, epochs=5, batch_size=16, max_length=32, mode="probe", weight_decay=1e-2)
    return ExperimentSpec(data=DataConfig(task="sst2", data_dir=data_dir, sizes=SIZES), weak="tiny-bert",
                          strong="tiny-bert", weak_cfg=base.replace(layer=1), ceiling_cfg=base, student_cfg=base, **kw)


def test_probe_experiment_with_ood_reuses_activations(tmp_path, data_dir, model_cache):
    cache = StageCache(tmp_path)
    report = run_experiment(probe_spec(data_dir, ood_tasks=["imdb"]), cache)
    ood = report["ood"]["imdb"]
    assert ood["n"] == SIZES.test and 0 <= ood["student_acc"] <= 1
    stages = [t["stage"] for t in cache.trainings()]
    # one extraction for the task's texts and one for the OOD texts; every role a probe fit
    assert stages.count("activations") == 2 and {"weak", "ceiling", "student"} <= set(stages)
    again = run_experiment(probe_spec(data_dir, ood_tasks=["imdb"]), cache)
    assert len(cache.trainings()) == len(stages) and again["ood"] == report["ood"]  # nothing recomputed


def test_run_cli_probe_layers(tmp_path, data_dir, model_cache):
    out = tmp_path / "run.json"
    rc = run_main(["--task", "sst2", "--data-dir", data_dir, "--weak", "tiny-bert", "--strong", "tiny-bert",
                   "--mode", "probe", "--weak-layer", "1", "--layer", "2", "--weight-decay", "0.01",
                   "--lr", "0.01", "--weak-lr", "0.01", "--ceiling-lr", "0.01", "--epochs", "3",
                   "--n-a", "40", "--n-b", "40", "--n-val", "24", "--n-test", "24", "--max-length", "32",
                   "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert rc == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["weak_cfg"]["layer"] == 1 and run["student_cfg"]["layer"] == 2
    assert run["student_cfg"]["weight_decay"] == 0.01 and "layer" not in run["ceiling_cfg"]
