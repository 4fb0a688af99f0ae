"""Models: spec parsing, offline resolution, truncation, and scalar score heads.

    spec = validate_model_spec("sentence-transformers/all-MiniLM-L6-v2@L2")  # config only
    model, tokenizer = build_model(str(spec), mode="finetune", seed=0)
    scores = model(input_ids, attention_mask)  # Tensor[N]
"""

from w2s_ray.models.arch import model_size, validate_model_spec
from w2s_ray.models.build import LORA_TARGETS, build_model
from w2s_ray.models.heads import POOLING_CHOICES, POOLINGS, ScoreModel
from w2s_ray.models.resolve import PROVIDERS, model_cache_dir, resolve_model_source
from w2s_ray.models.spec import ModelSpec, parse_model_spec

__all__ = [
    "LORA_TARGETS",
    "POOLINGS",
    "POOLING_CHOICES",
    "PROVIDERS",
    "ModelSpec",
    "ScoreModel",
    "build_model",
    "model_cache_dir",
    "model_size",
    "parse_model_spec",
    "resolve_model_source",
    "validate_model_spec",
]
