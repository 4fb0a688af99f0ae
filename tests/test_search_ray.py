"""The main job on a real local Ray cluster: `ray job submit -- python -m w2s_ray.search ...`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.ray_cluster import LocalRay, tiny_space
from tests.search_plan import copy_shared_stages

SPACE = tiny_space(epochs=1)


@pytest.fixture(scope="module")
def cluster():
    ray = LocalRay()
    ray.start_head(num_cpus=2)
    try:
        yield ray
    finally:
        ray.stop()


def submit(cluster: LocalRay, tmp: Path, data_dir: str, name: str, trials: int, *extra: str, attempts: int = 6) -> str:
    cluster.wait_for_job_agent()
    proc = cluster.ray(
        "job", "submit", f"--address={cluster.dashboard}", "--",
        "python", "-m", "w2s_ray.search", "--task", "sst2", "--preset", "tiny", "--space", str(tmp / "space.yaml"),
        "--num-samples", str(trials), "--storage", str(tmp / "runs"), "--name", name, "--data-dir", data_dir,
        "--tracking-uri", f"sqlite:///{tmp}/mlflow.db", *extra, check=False, timeout=1500,
    )
    if proc.returncode != 0 and "No available agent" in proc.stderr and attempts > 1:  # agent still registering
        time.sleep(15)
        return submit(cluster, tmp, data_dir, name, trials, *extra, attempts=attempts - 1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job_id = next(line.split("'")[1] for line in proc.stdout.splitlines() if "submitted successfully" in line)
    status = cluster.ray("job", "status", f"--address={cluster.dashboard}", job_id).stdout
    assert "succeeded" in status.lower(), status
    return proc.stdout


def ledger(tmp: Path) -> list[dict]:
    lines = (tmp / "runs" / "cache" / "ledger.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


ASHA_SPACE = tiny_space(epochs=3)


def optuna_states(search_dir: Path) -> dict[str, tuple[str, float | None]]:
    """Trial id → (Optuna state, value), read from the searcher state Tune saved with the search."""
    import pickle

    [path] = search_dir.glob("searcher-state-*.pkl")
    state = pickle.loads(path.read_bytes())
    study, trials = state["_ot_study"], state["_ot_trials"]
    return {tid: (study.trials[t.number].state.name, study.trials[t.number].value) for tid, t in trials.items()}


@pytest.mark.ray
def test_job_submit_search_counts_trainings_and_reuses_shared_stages(cluster, tmp_path, data_dir):
    (tmp_path / "space.yaml").write_text(SPACE)
    out = submit(cluster, tmp_path, data_dir, "first", trials=2)
    assert "3/3" not in out and "2/2 trials finished" in out
    trials = pd.read_parquet(tmp_path / "runs" / "first" / "w2s" / "trials.parquet")
    assert len(trials) == 2 and (trials["final"] == 1).all()
    assert (tmp_path / "runs" / "first" / "w2s" / "best_config.yaml").exists()
    stages = [t["stage"] for t in ledger(tmp_path)]
    # tiny preset: one weak and one ceiling candidate each, no bootstrap, then one student per trial
    assert sorted(stages) == ["ceiling", "student", "student", "weak"]

    report = subprocess.run([sys.executable, "-m", "w2s_ray.report", str(tmp_path / "runs" / "first"),
                             "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "logged to MLflow run" in report.stdout

    first_keys = {t["key"] for t in ledger(tmp_path)}
    # the second search keeps only its baseline and best weights, and writes a resumable checkpoint
    # every epoch (each deleted once its stage publishes)
    submit(cluster, tmp_path, data_dir, "second", 3, "--keep-top-k", "0", "--checkpoint-interval-s", "0")
    new = ledger(tmp_path)[len(stages):]
    second = pd.read_parquet(tmp_path / "runs" / "second" / "w2s" / "trials.parquet")
    assert len(second) == 3
    # the same cache: no reference retrained; exactly the students not trained before are trained
    # (the baseline point repeats the first search's baseline, so its student is reused)
    assert {t["stage"] for t in new} <= {"student"}
    expected = set(second["student_key"]) - first_keys
    assert sorted(t["key"] for t in new) == sorted(expected)
    assert second["student_key"].iloc[0] in first_keys

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("w2s-sst2")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("w2s.role") == "search"]
    assert len(parents) == 2
    for parent in parents:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
                    and r.data.tags.get("w2s.role") == "trial"]
        assert len(children) == (2 if parent.data.tags.get("w2s.search_name") == "first" else 3)
        assert all(c.info.status == "FINISHED" for c in children)
        assert any(a.path == "outputs" for a in client.list_artifacts(parent.info.run_id))
    first = next(p for p in parents if p.data.tags.get("w2s.search_name") == "first")
    plots = {a.path for a in client.list_artifacts(first.info.run_id, "plots")}
    assert plots == {"plots/accuracy_vs_size.png", "plots/pgr_per_method.png", "plots/best_so_far.png"}
    stages = [r for r in runs if r.data.tags.get("w2s.role") == "stage"]
    assert {r.data.tags["w2s.stage"] for r in stages} == {"weak", "ceiling"}
    weak_stage = next(r for r in stages if r.data.tags["w2s.stage"] == "weak")
    assert {a.path for a in client.list_artifacts(weak_stage.info.run_id, "predictions")} >= {"predictions/b.parquet"}
    trial_run = next(r for r in runs if r.data.tags.get("w2s.role") == "trial")
    assert client.list_artifacts(trial_run.info.run_id, "checkpoints")
    one_copy_of_weights(tmp_path, runs, second)


def one_copy_of_weights(tmp: Path, runs: list, second: pd.DataFrame) -> None:
    """Storage after the two searches: each student's weights once, in the stage cache; the second
    search pruned what neither search keeps; MLflow points at the cache and holds no weights."""
    from w2s_ray.pipeline.stage_pointer import POINTER_FILE

    exp = tmp / "runs" / "second"
    # every Ray Train run published and lost its resumable checkpoint; the run records stay
    train_runs = list((exp / "train_runs").iterdir())
    assert train_runs and not [c for r in train_runs for c in r.glob("checkpoint_*") if c.is_dir()]
    # Tune's trial checkpoints are pointers, not weights
    tune_ckpts = [c for c in exp.glob("*/checkpoint_*") if c.is_dir()]
    assert tune_ckpts and all(sorted(p.name for p in c.iterdir()) == [POINTER_FILE] for c in tune_ckpts)
    cache = tmp / "runs" / "cache" / "student"
    searches = {name: json.loads((tmp / "runs" / name / "w2s" / "search.json").read_text())
                for name in ("first", "second")}
    weights = searches["second"]["weights"]
    kept, pruned, others = weights["kept"], weights["pruned"], weights["kept_by_others"]
    assert set(kept) | set(pruned) | set(others) == set(second["student_key"])
    assert {r for reasons in kept.values() for r in reasons} >= {"baseline", "best"}
    assert len(kept) < 3 and (pruned or others)  # --keep-top-k 0: at least one of the 3 students is not kept
    for key in second["student_key"]:  # predictions stay for every student; weights only where a search keeps them
        assert (cache / key / "predictions" / "val.parquet").exists()
        assert (cache / key / "checkpoint" / "model.safetensors").exists() == (key not in pruned)
    for key in searches["first"]["weights"]["kept"]:  # the second search never pruned the first one's weights
        assert (cache / key / "checkpoint" / "model.safetensors").exists()
    [parent] = [r for r in runs
                if r.data.tags.get("w2s.role") == "search" and r.data.tags["w2s.search_name"] == "second"]
    for label in ("baseline", "best"):
        trial = searches["second"]["rows"][label]["trial_id"]
        uri = parent.data.tags[f"w2s.checkpoint.{label}"]
        [run] = [r for r in runs if r.data.tags.get("w2s.trial_id") == trial and r.data.tags.get("w2s.role") == "trial"]
        assert run.data.tags["w2s.checkpoint_uri"] == uri and label in run.data.tags["w2s.checkpoint_kept"]
        stored = cache / run.data.tags["w2s.stage_key"] / "checkpoint"
        assert uri == stored.resolve().as_uri() and (stored / "model.safetensors").exists()
    trials = [r for r in runs if r.data.tags.get("w2s.role") == "trial" and r.data.tags.get("w2s.stage_key") in pruned]
    assert all(r.data.tags.get("w2s.checkpoint_pruned") == "true" for r in trials)
    # MLflow holds no copy of any weights: the trial runs log the pointer, the stage runs tag the URI
    assert not list((tmp / "mlartifacts").rglob("*.safetensors"))
    stages = [r for r in runs if r.data.tags.get("w2s.role") == "stage"]
    assert stages and all(r.data.tags["w2s.checkpoint_uri"].startswith("file://") for r in stages)


@pytest.mark.ray
@pytest.mark.mlflow_server
def test_job_submit_asha_search_tracked_on_a_postgres_mlflow_server(cluster, tmp_path, data_dir, mlflow_postgres_server,
                                                                     tiny_shared_stages):
    """The production setup (MLflow server on PostgreSQL, the search a Ray job whose runtime env sets
    MLFLOW_TRACKING_URI and W2S_STORAGE, as clusters/README.md shows), with ASHA early stopping.

    Trials ASHA stops at its first rung must reach Optuna as PRUNED, never as COMPLETE with a
    truncated value, and be marked as stopped early in MLflow. The references come from the
    cache (the counting test above trains them under Ray Train); the trials train their students.
    """
    import mlflow

    (tmp_path / "space.yaml").write_text(ASHA_SPACE)
    copy_shared_stages(tiny_shared_stages, tmp_path / "runs")
    uri = mlflow_postgres_server.uri
    # as clusters/README.md submits: the tracking server and storage come from the job's env_vars,
    # which the driver must merge with, not re-declare (Ray refuses a duplicate key)
    out = cluster.submit_job(
        "python", "-m", "w2s_ray.search", "--task", "sst2", "--preset", "tiny", "--space", str(tmp_path / "space.yaml"),
        "--num-samples", "4", "--asha", "--name", "pg", "--data-dir", data_dir,
        runtime_env={"env_vars": {"MLFLOW_TRACKING_URI": uri, "W2S_STORAGE": str(tmp_path / "runs")}})
    assert "Failed to merge" not in out

    trials = pd.read_parquet(tmp_path / "runs" / "pg" / "w2s" / "trials.parquet")
    assert len(trials) == 4
    finished = trials["final"].fillna(0) == 1
    # seeded on CPU: ASHA stops one trial at its first rung (the baseline, first, always finishes)
    assert (~finished).any(), trials[["trial_id", "training_iteration", "objective"]]
    baseline = trials[(trials["config/loss"] == "xent") & (trials["config/lr"] == 5e-4)]
    assert len(baseline) == 1 and baseline["final"].iloc[0] == 1
    states = optuna_states(tmp_path / "runs" / "pg")
    assert set(states) == set(trials["trial_id"])
    for _, row in trials.iterrows():
        state, value = states[row["trial_id"]]
        if row["final"] == 1:
            assert state == "COMPLETE" and value == pytest.approx(row["objective"])
        else:
            assert state == "PRUNED" and row["training_iteration"] < 4

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("w2s-sst2")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    parents = [r for r in runs
               if r.data.tags.get("w2s.role") == "search" and r.data.tags.get("w2s.search_name") == "pg"]
    assert len(parents) == 1
    parent = parents[0].info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    trial_runs = {r.data.tags["w2s.trial_id"]: r for r in children if r.data.tags.get("w2s.role") == "trial"}
    stages = [r for r in children if r.data.tags.get("w2s.role") == "stage"]
    assert set(trial_runs) == set(trials["trial_id"])
    assert all(r.info.status == "FINISHED" for r in trial_runs.values())
    assert {r.data.tags["w2s.stage"] for r in stages} == {"weak", "ceiling"}
    weak = next(r for r in stages if r.data.tags["w2s.stage"] == "weak")
    assert "predictions/b.parquet" in {a.path for a in client.list_artifacts(weak.info.run_id, "predictions")}
    for _, row in trials.iterrows():
        run = trial_runs[row["trial_id"]]
        assert "train_loss" in run.data.metrics  # per-epoch metrics, also from a trial stopped early
        if row["final"] == 1:
            assert "student_val_acc" in run.data.metrics and "w2s.stopped_early" not in run.data.tags
            assert client.list_artifacts(run.info.run_id, "checkpoints")
        else:
            assert run.data.tags.get("w2s.stopped_early") == "true"
