"""Predicting with a finished stage's saved weights (OOD sets), cached like any stage."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from w2s_ray.pipeline.cache import StageCache, stage_key
from w2s_ray.pipeline.data import Split
from w2s_ray.pipeline.stages import StageResult

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from w2s_ray.models.heads import ScoreModel
    from w2s_ray.train.probe import ProbeHead


class CheckpointMismatch(RuntimeError):
    """A stage's saved weights do not fit the model rebuilt from its spec."""


def check_checkpoint_keys(model: torch.nn.Module, saved: Iterable[str], mode: str, where: str = "checkpoint") -> None:
    """Raise :class:`CheckpointMismatch`, naming the keys, unless ``saved`` fits ``model`` in ``mode``.

    Finetune checkpoints hold the whole state dict; probe and LoRA ones hold only the trainable
    tensors (head, adapters: see ``w2s_ray.train.worker._weights``), so there only the frozen
    body's keys may be absent. A key the model does not have is always an error.
    """
    saved = set(saved)
    state = set(model.state_dict())
    if mode == "finetune":
        expected = state
    else:
        expected = {k for k, p in model.named_parameters() if p.requires_grad} & state
    missing, unexpected = sorted(expected - saved), sorted(saved - state)
    if missing or unexpected:
        parts = [f"{len(missing)} missing ({_names(missing)})"] if missing else []
        parts += [f"{len(unexpected)} unexpected ({_names(unexpected)})"] if unexpected else []
        raise CheckpointMismatch(f"{where} does not fit the {mode} model rebuilt from its spec: " + "; ".join(parts))


def _names(keys: list[str], limit: int = 8) -> str:
    more = f", … {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_stage_model(stage: StageResult) -> tuple[ScoreModel, PreTrainedTokenizerBase]:
    """Rebuild a stage's model from its spec and load its saved (trainable) weights.

    Raises :class:`CheckpointMismatch` if a trainable (or, for finetune, any) weight is missing
    from the checkpoint or the checkpoint holds a key the model lacks.
    """
    from safetensors.torch import load_file

    from w2s_ray.models import build_model

    cfg = stage.config
    model, tokenizer = build_model(stage.model, mode=cfg["mode"], pooling=cfg["pooling"],
                                   lora_r=cfg["lora_r"], seed=cfg["seed"])
    path = stage.path / "checkpoint" / "model.safetensors"
    weights = load_file(str(path))
    check_checkpoint_keys(model, weights, cfg["mode"], where=f"{stage.kind} checkpoint {path}")
    model.load_state_dict(weights, strict=False)  # the frozen body of probe/LoRA comes from the spec
    return model.eval(), tokenizer


def load_probe_head(stage: StageResult, kind: str) -> ProbeHead:
    """A probe stage's fitted head (``checkpoint/probe.safetensors``)."""
    from safetensors.torch import load_file

    from w2s_ray.train.probe import ProbeHead

    t = load_file(str(stage.path / "checkpoint" / "probe.safetensors"))
    return ProbeHead(t["weight"].numpy(), float(t["bias"][0]), t["mean"].numpy(), t["scale"].numpy(),
                     pairwise=kind == "pairwise")


def predict_stage(stage: StageResult, split: Split, kind: str, cache: StageCache, tag: str,
                  features: np.ndarray | None = None) -> np.ndarray:
    """p(label=1) of a stage's model on ``split``; cached under ``eval/<hash(stage, tag)>``.

    A probe stage scores ``features`` (the split's cached activations at the probe's layer).
    """
    from w2s_ray.train.data import encode
    from w2s_ray.train.loop import predict

    key = stage_key("eval", {"stage": stage.key, "tag": tag, "n": len(split)})
    found = cache.get("eval", key)
    if found is None:
        def build(tmp: Path) -> None:
            if stage.config.get("mode") == "probe":
                if features is None:
                    raise ValueError(f"probe stage {stage.key} needs the split's activations to predict")
                probs = load_probe_head(stage, kind).probs(features)
                pq.write_table(pa.table({"id": split.ids, "prob": probs, "label": split.labels}),
                               tmp / "predictions.parquet")
                return
            model, tok = load_stage_model(stage)
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            with torch.no_grad():
                probs = predict(model, encode(tok, split.inputs, kind, stage.config["max_length"]),
                                stage.config["batch_size"], pad)
            pq.write_table(pa.table({"id": split.ids, "prob": probs, "label": split.labels}),
                           tmp / "predictions.parquet")
        found = cache.put("eval", key, build)
    return pq.read_table(found / "predictions.parquet")["prob"].to_numpy()
