"""The search record (``--resume`` before Tune saved anything) and orphan trial runs, without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.search_plan import tiny_plan
from w2s_ray.errors import UserError
from w2s_ray.search.record import read_search_record, record_path, write_search_record


def test_resume_accepts_a_search_that_has_only_its_record(tmp_path, data_dir, model_cache):
    with pytest.raises(UserError, match="--resume: no search named 's'"):
        tiny_plan(tmp_path, data_dir, "--name", "s", "--resume")
    plan = tiny_plan(tmp_path, data_dir, "--name", "s")
    first = write_search_record(plan, {"num_samples": plan.num_samples})
    assert json.loads(Path(record_path(plan.exp_path)).read_text()) == first
    assert first["starts"] == 1 and first["settings"] == {"num_samples": 3}
    resumed = tiny_plan(tmp_path, data_dir, "--name", "s", "--resume")  # accepted: the record exists
    second = write_search_record(resumed, {"num_samples": resumed.num_samples})
    assert second["starts"] == 2 and second["created_at"] == first["created_at"]
    assert len(first["search_id"]) == 32 and second["search_id"] == first["search_id"]  # kept on resume
    assert read_search_record(plan.exp_path) == second
    assert not list((tmp_path / "runs" / "s" / "w2s").glob(".*"))  # no temp file left by the atomic write


def test_running_trial_runs_unknown_to_the_search_are_marked_orphans(tmp_path):
    from w2s_ray.tracking import BufferedClient
    from w2s_ray.tracking.orphans import ORPHAN_TAG, mark_orphan_trials

    client = BufferedClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.mlflow.create_experiment("e")
    parent = client.mlflow.create_run(exp, tags={"w2s.role": "search"}).info.run_id
    runs = {tid: client.mlflow.create_run(exp, tags={"w2s.role": "trial", "w2s.trial_id": tid,
                                                      "mlflow.parentRunId": parent}).info.run_id
            for tid in ("known", "lost", "done")}
    client.mlflow.set_terminated(runs["done"], "FINISHED")
    assert mark_orphan_trials(client, exp, parent, {"known", "done"}) == [runs["lost"]]
    lost = client.mlflow.get_run(runs["lost"])
    assert lost.data.tags[ORPHAN_TAG] == "true" and lost.info.status == "KILLED"
    assert ORPHAN_TAG not in client.mlflow.get_run(runs["known"]).data.tags
    assert mark_orphan_trials(client, exp, parent, {"known", "done"}) == []  # a KILLED run is not marked again


def test_a_search_rerun_after_its_storage_was_deleted_gets_a_new_parent_run(tmp_path, data_dir, model_cache):
    import shutil

    from w2s_ray.tracking import BufferedClient, SearchTracker, find_search_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    plan = tiny_plan(tmp_path, data_dir, "--name", "s")
    first_id = write_search_record(plan, {})["search_id"]

    def parent(search_id: str) -> str:
        BufferedClient.forget_shared()
        tracker = SearchTracker(uri, "e", "s", plan.exp_path, search_id=search_id)
        return tracker.start({"task": "sst2"})

    first = parent(first_id)
    assert parent(write_search_record(plan, {})["search_id"]) == first  # a resume: same record, same run
    shutil.rmtree(tmp_path / "runs")
    second_id = write_search_record(plan, {})["search_id"]
    assert second_id != first_id
    second = parent(second_id)
    assert second != first
    assert find_search_run(uri, "e", "s", second_id) == second and find_search_run(uri, "e", "s", first_id) == first
