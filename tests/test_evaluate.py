"""OOD evaluation reloads a stage's saved weights and refuses ones that do not fit its model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from w2s_ray.models import build_model
from w2s_ray.pipeline.evaluate import CheckpointMismatch, check_checkpoint_keys, load_stage_model
from w2s_ray.pipeline.stages import StageResult
from w2s_ray.train.worker import _weights

CONFIG = {"pooling": "auto", "lora_r": 2, "seed": 0}


def _stage(tmp_path: Path, mode: str, weights: dict[str, torch.Tensor]) -> StageResult:
    from safetensors.torch import save_file

    (tmp_path / "checkpoint").mkdir()
    save_file(weights, str(tmp_path / "checkpoint" / "model.safetensors"))
    (tmp_path / "metrics.json").write_text(json.dumps({}))
    return StageResult("student", "k", tmp_path, "tiny-bert", {**CONFIG, "mode": mode})


@pytest.mark.parametrize("mode", ["finetune", "probe", "lora"])
def test_a_saved_stage_reloads_with_its_trained_weights(tmp_path, model_cache, mode):
    trained, _ = build_model("tiny-bert", mode=mode, lora_r=2, seed=0)
    with torch.no_grad():  # make the trainable tensors differ from a fresh build's
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(0.25)
    saved = _weights(trained, mode)
    model, _ = load_stage_model(_stage(tmp_path, mode, saved))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())


@pytest.mark.parametrize("mode", ["probe", "lora"])
def test_a_missing_trainable_weight_is_named(tmp_path, model_cache, mode):
    model, _ = build_model("tiny-bert", mode=mode, lora_r=2, seed=0)
    saved = _weights(model, mode)
    dropped = sorted(saved)[0]
    del saved[dropped]
    with pytest.raises(CheckpointMismatch, match=f"1 missing \\({dropped}\\)"):
        load_stage_model(_stage(tmp_path, mode, saved))


def test_finetune_needs_the_whole_body(model_cache):
    model, _ = build_model("tiny-bert", mode="finetune", seed=0)
    saved = set(model.state_dict())
    body_key = next(k for k in sorted(saved) if "embeddings" in k)
    with pytest.raises(CheckpointMismatch, match=body_key):
        check_checkpoint_keys(model, saved - {body_key}, "finetune")
    # the same body key may be absent from a probe checkpoint: the frozen body comes from the spec
    probe, _ = build_model("tiny-bert", mode="probe", seed=0)
    check_checkpoint_keys(probe, set(_weights(probe, "probe")), "probe")
    with pytest.raises(CheckpointMismatch, match="missing"):
        check_checkpoint_keys(probe, set(), "probe")


def test_an_unexpected_key_is_named(tmp_path, model_cache):
    model, _ = build_model("tiny-bert", mode="probe", seed=0)
    saved = {**_weights(model, "probe"), "head.renamed.weight": torch.zeros(2)}
    with pytest.raises(CheckpointMismatch, match=r"1 unexpected \(head\.renamed\.weight\)"):
        load_stage_model(_stage(tmp_path, "probe", saved))
