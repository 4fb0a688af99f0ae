"""Report plots from a search's outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from w2s_ray.analysis.plots import make_plots


def fake_search(root):
    out = root / "w2s"
    out.mkdir(parents=True)
    entry = {"weak_acc": 0.7, "ceiling_acc": 0.8, "student_acc": 0.75, "pgr": 0.5}
    search = {"name": "s", "task": "sst2",
              "references": {"weak": {"model": "tiny-bert"}, "ceiling": {"model": "tiny-bert"},
                             "bootstrap": [{"model": "tiny-bert", "key": "k", "test_acc": 0.72}]},
              "rows": {"baseline": {"val": entry, "test": entry}, "best": {"val": entry, "test": entry}}}
    (out / "search.json").write_text(json.dumps(search))
    pd.DataFrame({"trial_id": ["a", "b", "c"], "config/loss": ["xent", "logconf", "xent"],
                  "objective": [0.1, 0.4, 0.2], "val_pgr": [0.1, 0.4, 0.2]}).to_parquet(out / "trials.parquet")
    return root


def test_plots_are_written(tmp_path, model_cache):
    paths = make_plots(fake_search(tmp_path / "search"))
    assert [p.name for p in paths] == ["accuracy_vs_size.png", "pgr_per_method.png", "best_so_far.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_not_a_search_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "w2s_ray.report", str(tmp_path), "--no-mlflow"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not a finished search" in proc.stderr and "Traceback" not in proc.stderr


def test_a_probe_search_also_plots_every_layer_of_both_models(tmp_path, model_cache):
    from w2s_ray.analysis.plots import layer_candidates

    root = fake_search(tmp_path / "search")
    path = root / "w2s" / "search.json"
    search = json.loads(path.read_text())
    search["references"]["weak"]["candidates"] = [
        {"layer": 1, "weight_decay": 0.1, "val_acc": 0.6}, {"layer": 1, "weight_decay": 1.0, "val_acc": 0.65},
        {"layer": 2, "weight_decay": 0.1, "val_acc": 0.7}]
    search["references"]["ceiling"]["candidates"] = [{"layer": 2, "weight_decay": 0.1, "val_acc": 0.8}]
    path.write_text(json.dumps(search))
    assert layer_candidates(search) == {"weak": {1: 0.65, 2: 0.7}, "ceiling": {2: 0.8}}  # best over L2
    paths = make_plots(root)
    assert [p.name for p in paths][-1] == "accuracy_by_layer.png" and paths[-1].stat().st_size > 1000
