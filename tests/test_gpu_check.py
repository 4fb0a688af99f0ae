"""bench/gpu_check.sh parses, and its report (bench/gpu_report.py) computes the right numbers from
a fake GPU run: two half-GPU students overlapping on GPU 0, a fine-tune's MFU, nvidia-smi samples."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _report_module():
    spec = importlib.util.spec_from_file_location("gpu_report", REPO / "bench" / "gpu_report.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_script_parses() -> None:
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check.sh")], check=True)


def _training(cache: Path, key: str, stage: str, end: float, seconds: float, gpu: str, mode: str = "finetune") -> dict:
    entry = cache / "stages" / key
    entry.mkdir(parents=True)
    (entry / "metrics.json").write_text(json.dumps({
        "stage": stage, "model": "fake-model", "n_train": 600, "train_seconds": seconds,
        "train_config": {"epochs": 2, "max_length": 64, "mode": mode, "batch_size": 32},
        "placement": {"device": "cuda:0", "accelerator_ids": {"GPU": [gpu]}, "node_id": "abcdef0123",
                      "assigned_resources": {"CPU": 2.0, "GPU": 0.25}}}))
    return {"stage": stage, "key": key, "time": end, "seconds": seconds}


def test_report_from_a_fake_gpu_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import w2s_ray.models

    mod = _report_module()
    monkeypatch.setattr(w2s_ray.models, "model_size", lambda name: 1_000_000)
    monkeypatch.delenv("W2S_PEAK_TFLOPS", raising=False)
    cache = tmp_path / "quick" / "cache"
    ledger = [
        _training(cache, "k1", "ceiling", end=100.0, seconds=10.0, gpu="0"),
        _training(cache, "k2", "student", end=130.0, seconds=20.0, gpu="0"),  # 110..130
        _training(cache, "k3", "student", end=140.0, seconds=20.0, gpu="0"),  # 120..140: overlaps k2
        _training(cache, "k4", "student", end=200.0, seconds=10.0, gpu="0"),  # alone
        {"stage": "activations", "key": "a1", "time": 50.0, "seconds": 4.0, "texts": 2000, "model": "mpnet"},
    ]
    (cache / "ledger.jsonl").write_text("".join(json.dumps(x) + "\n" for x in ledger))
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "gpu.csv").write_text("2026/01/01 00:00:00.000, 0, 1200\n2026/01/01 00:00:00.500, 0, 5400\n")
    (samples / "apps.csv").write_text("t1, 11, GPU-x, 100\nt2, 11, GPU-x, 100\nt2, 12, GPU-x, 200\n")

    rep = mod.report({"quick": tmp_path / "quick"}, "NVIDIA H100 80GB HBM3", samples)
    assert rep["peak_tflops"]["fp32_dense"] == 67.0 and rep["peak_tflops"]["bf16_dense"] == 989.0
    assert rep["gpu_memory_peak_mib"] == {"0": 5400.0} and rep["gpu_processes_peak"] == 2
    run = rep["runs"]["quick"]
    assert run["trials_per_gpu"] == {"abcdef01/GPU0": 2}
    ceiling = next(t for t in run["trainings"] if t["stage"] == "ceiling")
    assert ceiling["examples"] == 1200 and ceiling["examples_per_s"] == 120.0
    tokens = 1200 * 64
    assert ceiling["tokens_upper"] == tokens
    assert ceiling["mfu_fp32"] == round(6 * 1_000_000 * tokens / 10.0 / 67e12, 4)
    assert run["extractions"] == [{"model": "mpnet", "texts": 2000, "seconds": 4.0, "texts_per_s": 500.0}]
    md = mod.to_markdown(rep)
    assert "67.0 TFLOP/s dense FP32" in md and "| student | fake-model |" in md


def test_peak_lookup_names_the_row_it_used(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _report_module()
    monkeypatch.delenv("W2S_PEAK_TFLOPS", raising=False)
    assert mod.peak_tflops("NVIDIA H200")[2] == "H200"
    assert mod.peak_tflops("NVIDIA A100-SXM4-80GB")[:2] == (19.5, 312.0)
    fp32, _, row = mod.peak_tflops("Some Future GPU")
    assert row == "unknown GPU" and fp32 != fp32  # NaN: no MFU rather than a wrong one
    monkeypatch.setenv("W2S_PEAK_TFLOPS", "100")
    assert mod.peak_tflops("Some Future GPU")[0] == 100.0
    assert mod.max_overlap([(0, 2), (1, 3), (2, 4)]) == 2
