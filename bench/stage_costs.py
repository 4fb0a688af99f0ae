"""Per-stage training cost of MiniLM and mpnet on this machine, for ``simulate_grid.py``.

Trains one weak-style stage per model in-process (the stage cache's ledger seconds: model
build, fine-tuning, per-epoch validation, predictions, publish) and writes the seconds, the
example counts and the models' non-embedding parameter counts to ``bench/stage_costs.json``.

    python bench/stage_costs.py --data-dir ../shared/data --n 128
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

MODELS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "mpnet": "sentence-transformers/all-mpnet-base-v2"}


def non_embedding_params(spec: str) -> int:
    """Parameters outside the embedding tables (the ones whose FLOPs scale with tokens)."""
    from w2s_ray.models import build_model

    model, _ = build_model(spec, mode="finetune", pooling="auto", seed=0)
    return sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("W2S_DATA_DIR"))
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--out", default=str(Path(__file__).with_name("stage_costs.json")))
    args = p.parse_args()
    import torch

    from w2s_ray.config import DataConfig, SplitSizes, TrainConfig
    from w2s_ray.pipeline.cache import StageCache
    from w2s_ray.pipeline.data import prepare_data
    from w2s_ray.pipeline.stages import Pipeline
    from w2s_ray.train.executor import LocalExecutor

    n = args.n
    data = prepare_data(DataConfig(task="sst2", data_dir=args.data_dir,
                                   sizes=SplitSizes(a=n, b=n, val=n // 2, test=n // 2)))
    cfg = TrainConfig(batch_size=32, max_length=args.max_length, epochs=1, lr=5e-5)
    out = {"task": "sst2", "max_length": args.max_length, "threads": torch.get_num_threads(), "models": {}}
    for name, spec in MODELS.items():
        cache = StageCache(tempfile.mkdtemp(prefix=f"w2s-cost-{name}-"))
        Pipeline(data, cache, LocalExecutor()).weak(spec, cfg)
        entry = cache.trainings()[-1]
        # weak stage: trains on A (1 epoch), validates on val once, predicts B, val and test
        out["models"][name] = {"spec": spec, "seconds": entry["seconds"], "train_examples": n,
                               "predict_examples": n + 2 * (n // 2) + n // 2, "epochs": 1,
                               "non_embedding_params": non_embedding_params(spec)}
        print(name, out["models"][name])
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
