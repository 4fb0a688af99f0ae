"""A probe search on a real local Ray cluster: Tune trials fit their probes in-process.

Ray Train runs the one extraction; no trial starts a Ray Train worker group, which is what
makes hundreds of probe trials affordable.
"""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from tests.ray_cluster import LocalRay
from tests.test_activations import PROBE_SPACE


@pytest.mark.ray
def test_probe_search_starts_no_train_worker_group_per_trial(tmp_path, data_dir, model_cache):
    (tmp_path / "space.yaml").write_text(PROBE_SPACE)
    ray = LocalRay()
    ray.start_head(num_cpus=2)

    def search(name: str, confirm_seeds: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "w2s_ray.search", "--task", "sst2", "--preset", "tiny-probe",
             "--space", str(tmp_path / "space.yaml"), "--num-samples", "8", "--max-concurrent", "2",
             "--confirm-seeds", confirm_seeds, "--storage", str(tmp_path / "runs"), "--name", name,
             "--data-dir", data_dir, "--tracking-uri", f"sqlite:///{tmp_path}/{name}.db",
             "--address", ray.address],
            env=ray.environ(), capture_output=True, text=True, timeout=900)

    try:
        proc = search("probe", "1")
        listed = ray.ray("list", "actors", f"--address={ray.dashboard}", "--format=json", "--limit=10000").stdout
        ledger_path = tmp_path / "runs" / "cache" / "ledger.jsonl"
        first_ledger = ledger_path.read_text()
        again = search("probe-again", "0")  # the same seed, 2 trials at once: they may end in another order
    finally:
        ray.stop()
    actor_classes = [a["class_name"] for a in json.loads(listed[listed.index("["):])]
    assert "ImplicitFunc" in actor_classes  # the Tune trials ran as actors ...
    # ... and none made Tune's report queue actor: a probe trial starts no Ray Train callback
    assert "_QueueActor" not in actor_classes, actor_classes
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "8/8 trials finished" in proc.stdout
    ledger = [json.loads(x) for x in first_ledger.splitlines()]
    students = [t for t in ledger if t["stage"] == "student"]
    assert [t["stage"] for t in ledger].count("activations") == 1  # weak and strong are one tiny model
    trial_ids = {t["trial_id"] for t in students if "trial_id" in t}
    assert len(trial_ids) == 8 and all(t["probe"] for t in students)
    # Ray Train ran the extraction and nothing else: no student, weak or ceiling worker group
    runs = sorted(p.name for p in (tmp_path / "runs" / "probe" / "train_runs").iterdir())
    assert runs and all(name.startswith("activations-") for name in runs), runs
    out = tmp_path / "runs" / "probe" / "w2s"
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 8 and (trials["final"] == 1).all()
    summary = (out / "summary.md").read_text()
    assert "confirmation on 1 further seeds" in summary and "beyond noise" in summary
    # the search drew its own plots and logged them to its MLflow parent run
    names = ("accuracy_vs_size.png", "pgr_per_method.png", "best_so_far.png", "accuracy_by_layer.png")
    assert {p.name for p in (out / "plots").iterdir()} == set(names)  # probes: every layer of both models too
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/probe.db")
    [parent] = client.search_runs([client.get_experiment_by_name("w2s-sst2").experiment_id],
                                  "tags.`w2s.role` = 'search'")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert logged == {f"plots/{n}" for n in names}
    # the seed fixes what the search tried and found, whatever order the concurrent trials ended in
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert trial_sequence(out) == trial_sequence(tmp_path / "runs" / "probe-again" / "w2s")
    # ... so the rerun found every student in the cache: no training paid twice
    assert ledger_path.read_text() == first_ledger


def trial_sequence(out) -> list[tuple]:
    """Each trial's config and objective, in the order the searcher sampled them (Tune's trial order)."""
    trials = pd.read_parquet(out / "trials.parquet")
    columns = [*sorted(c for c in trials.columns if c.startswith("config/")), "objective"]
    return [tuple(None if pd.isna(v) else v for v in row) for row in trials[columns].itertuples(index=False)]
