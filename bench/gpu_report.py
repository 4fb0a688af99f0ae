"""Summarise a GPU check (``bench/gpu_check.sh``): throughput, MFU, GPU memory and trials per GPU.

Reads what the searches left behind, nothing else:

* ``<storage>/cache/**/metrics.json`` (one per training: stage, model, examples, seconds, train
  config, and where it ran: ``placement``) and ``<storage>/cache/ledger.jsonl`` (each training's
  and extraction's end time and seconds, so overlapping trainings can be counted);
* ``nvidia-smi`` samples written by the script (``gpu.csv``: timestamp, index, memory.used MiB;
  ``apps.csv``: timestamp, pid, gpu uuid, used memory MiB).

MFU of a fine-tune = 6 x parameters x tokens / (seconds x peak FLOP/s). Tokens are counted as
examples x epochs x max_length (x 2 texts for pairwise tasks): batches are padded to their
longest text, at most max_length, so this is an upper bound and so is the MFU. Seconds are the
stage's recorded seconds (model loading and predictions included), which lowers it again.
Training runs in float32 without TF32, so the peak is the GPU's dense FP32 rate; the bf16 dense
peak is printed beside it for reference. ``W2S_PEAK_TFLOPS`` overrides the FP32 figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

# dense (no sparsity) peak TFLOP/s: (FP32 non-tensor, BF16 tensor), from NVIDIA's datasheets
PEAK_TFLOPS: dict[str, tuple[float, float]] = {
    "H200": (67.0, 989.0),
    "H100 SXM": (67.0, 989.0),
    "H100 NVL": (60.0, 835.0),
    "H100 PCIe": (51.0, 756.0),
    "H100": (67.0, 989.0),
    "A100": (19.5, 312.0),
    "L40S": (91.6, 362.0),
    "L4": (30.3, 121.0),
    "A10G": (31.2, 70.0),
    "A10": (31.2, 125.0),
    "T4": (8.1, 65.0),
}


def peak_tflops(gpu_name: str) -> tuple[float, float, str]:
    """(FP32, BF16) dense peak TFLOP/s for a ``torch.cuda.get_device_name`` string, and the row used."""
    override = os.environ.get("W2S_PEAK_TFLOPS")
    for key, (fp32, bf16) in PEAK_TFLOPS.items():  # most specific first
        if key.lower() in gpu_name.lower():
            return (float(override) if override else fp32), bf16, key
    return (float(override) if override else float("nan")), float("nan"), "unknown GPU"


def trainings(storage: Path) -> list[dict[str, Any]]:
    """Every training under ``storage``'s cache, with its end time from the ledger."""
    ledger: dict[str, dict] = {}
    for path in storage.rglob("ledger.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                ledger[rec["key"]] = rec
    out = []
    for path in sorted(storage.rglob("metrics.json")):
        m = json.loads(path.read_text())
        if "train_config" not in m:
            continue
        rec = ledger.get(path.parent.name, {})
        end = rec.get("time")
        out.append({**m, "key": path.parent.name, "end": end,
                    "start": end - m["train_seconds"] if end is not None else None})
    return out


def extractions(storage: Path) -> list[dict[str, Any]]:
    """Activation extractions from the ledger (model, texts, seconds)."""
    out = []
    for path in storage.rglob("ledger.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("stage") == "activations":
                    out.append(rec)
    return out


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one time."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def trials_per_gpu(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Most student trainings that ran at once on each (node, GPU)."""
    per_gpu: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        where = r.get("placement") or {}
        ids = (where.get("accelerator_ids") or {}).get("GPU") or []
        if r.get("stage") == "student" and r.get("start") is not None and ids:
            for gpu in ids:
                per_gpu[f"{str(where.get('node_id', '?'))[:8]}/GPU{gpu}"].append((r["start"], r["end"]))
    return {gpu: max_overlap(iv) for gpu, iv in sorted(per_gpu.items())}


def throughput(row: dict[str, Any], params: int | None, peak_fp32: float, kind: str = "classify") -> dict[str, Any]:
    """examples/s and, for fine-tunes with a known size, FLOPs and MFU (upper bounds, see module doc)."""
    cfg = row["train_config"]
    epochs = int(cfg.get("epochs", 1))
    examples = int(row["n_train"]) * epochs
    seconds = max(float(row["train_seconds"]), 1e-9)
    out: dict[str, Any] = {"stage": row["stage"], "model": row["model"], "mode": cfg.get("mode", "finetune"),
                           "examples": examples, "seconds": round(seconds, 2),
                           "examples_per_s": round(examples / seconds, 1),
                           "device": (row.get("placement") or {}).get("device")}
    if out["mode"] == "finetune" and params:
        tokens = examples * int(cfg["max_length"]) * (2 if kind == "pairwise" else 1)
        flops = 6.0 * params * tokens
        out.update(params=params, tokens_upper=tokens, tflops_per_s=round(flops / seconds / 1e12, 2),
                   mfu_fp32=round(flops / seconds / (peak_fp32 * 1e12), 4) if peak_fp32 == peak_fp32 else None)
    return out


def gpu_memory(gpu_csv: Path) -> dict[str, float]:
    """Peak ``memory.used`` (MiB) per GPU index from nvidia-smi samples."""
    peak: dict[str, float] = {}
    if gpu_csv.is_file():
        for row in csv.reader(gpu_csv.open()):
            if len(row) >= 3 and row[1].strip().isdigit():
                peak[row[1].strip()] = max(peak.get(row[1].strip(), 0.0), float(row[2].split()[0]))
    return peak


def gpu_processes(apps_csv: Path) -> int:
    """Most processes holding GPU memory at one sample (trainings sharing the GPU, plus extractions)."""
    per_sample: dict[str, set] = defaultdict(set)
    if apps_csv.is_file():
        for row in csv.reader(apps_csv.open()):
            if len(row) >= 2 and row[1].strip().isdigit():
                per_sample[row[0].strip()].add(row[1].strip())
    return max((len(p) for p in per_sample.values()), default=0)


def report(runs: dict[str, Path], gpu_name: str, samples: Path, kind: str = "classify") -> dict[str, Any]:
    """The whole report as a dict (also what ``--json`` writes)."""
    from w2s_ray.models import model_size

    fp32, bf16, row = peak_tflops(gpu_name)
    sizes: dict[str, int | None] = {}
    out: dict[str, Any] = {"gpu": gpu_name, "peak_tflops": {"fp32_dense": fp32, "bf16_dense": bf16, "from": row},
                           "gpu_memory_peak_mib": gpu_memory(samples / "gpu.csv"),
                           "gpu_processes_peak": gpu_processes(samples / "apps.csv"), "runs": {}}
    for name, storage in runs.items():
        rows = trainings(storage)
        table = []
        for r in rows:
            if r["model"] not in sizes:
                try:
                    sizes[r["model"]] = model_size(r["model"])
                except Exception:  # noqa: BLE001 - unknown size: no MFU for it
                    sizes[r["model"]] = None
            table.append(throughput(r, sizes[r["model"]], fp32, kind))
        ext = [{"model": e.get("model"), "texts": e.get("texts"), "seconds": round(float(e.get("seconds", 0)), 2),
                "texts_per_s": round(float(e.get("texts", 0)) / max(float(e.get("seconds", 0)), 1e-9), 1)}
               for e in extractions(storage)]
        out["runs"][name] = {"trainings": table, "extractions": ext, "trials_per_gpu": trials_per_gpu(rows)}
    return out


def to_markdown(rep: dict[str, Any]) -> str:
    p = rep["peak_tflops"]
    lines = [f"# GPU check: {rep['gpu']}", "",
             f"Peak assumed ({p['from']}): {p['fp32_dense']} TFLOP/s dense FP32 (training runs in float32, no TF32; "
             f"MFU is against this), {p['bf16_dense']} TFLOP/s dense BF16 for reference.",
             f"Peak GPU memory used (MiB, per GPU): {rep['gpu_memory_peak_mib'] or 'not sampled'}; "
             f"most processes on the GPU at once: {rep['gpu_processes_peak']}", ""]
    for name, run in rep["runs"].items():
        lines += [f"## {name}", "",
                  "| stage | model | mode | device | examples | s | examples/s | TFLOP/s | MFU (fp32) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in run["trainings"]:
            lines.append(f"| {t['stage']} | {t['model']} | {t['mode']} | {t['device']} | {t['examples']} | "
                         f"{t['seconds']} | {t['examples_per_s']} | {t.get('tflops_per_s', '')} | "
                         f"{t.get('mfu_fp32', '')} |")
        for e in run["extractions"]:
            lines.append(f"| activations | {e['model']} | extract | | {e['texts']} | {e['seconds']} | "
                         f"{e['texts_per_s']} | | |")
        lines += ["", f"Most student trainings at once per GPU: {run['trials_per_gpu'] or 'none recorded'}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's w2s_ray
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", default=[], metavar="NAME=STORAGE", help="a search's storage dir")
    p.add_argument("--gpu-name", required=True)
    p.add_argument("--samples", type=Path, required=True, help="folder with gpu.csv / apps.csv")
    p.add_argument("--kind", default="classify")
    p.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    runs = dict(item.split("=", 1) for item in args.run)
    rep = report({k: Path(v) for k, v in runs.items()}, args.gpu_name, args.samples, args.kind)
    args.out.with_suffix(".json").write_text(json.dumps(rep, indent=2))
    args.out.with_suffix(".md").write_text(to_markdown(rep))
    print(to_markdown(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
