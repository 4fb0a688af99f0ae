"""Predicting with a finished stage's saved weights (OOD sets), cached like any stage."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from w2s_ray.cache import StageCache, stage_key
from w2s_ray.data import Split
from w2s_ray.stages import StageResult


def load_stage_model(stage: StageResult):
    """Rebuild a stage's model from its spec and load its saved (trainable) weights."""
    from safetensors.torch import load_file

    from w2s_ray.models import build_model

    cfg = stage.config
    model, tokenizer = build_model(stage.model, mode=cfg["mode"], pooling=cfg["pooling"],
                                   lora_r=cfg["lora_r"], seed=cfg["seed"])
    model.load_state_dict(load_file(str(stage.path / "checkpoint" / "model.safetensors")), strict=False)
    return model.eval(), tokenizer


def predict_stage(stage: StageResult, split: Split, kind: str, cache: StageCache, tag: str) -> np.ndarray:
    """p(label=1) of a stage's model on ``split``; cached under ``eval/<hash(stage, tag)>``."""
    from w2s_ray.train.data import encode
    from w2s_ray.train.loop import predict

    key = stage_key("eval", {"stage": stage.key, "tag": tag, "n": len(split)})
    found = cache.get("eval", key)
    if found is None:
        def build(tmp):
            model, tok = load_stage_model(stage)
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            with torch.no_grad():
                probs = predict(model, encode(tok, split.inputs, kind, stage.config["max_length"]),
                                stage.config["batch_size"], pad)
            pq.write_table(pa.table({"id": split.ids, "prob": probs, "label": split.labels}), tmp / "predictions.parquet")
        found = cache.put("eval", key, build)
    return pq.read_table(found / "predictions.parquet")["prob"].to_numpy()
