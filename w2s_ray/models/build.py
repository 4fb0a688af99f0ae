"""Build a ScoreModel and its tokenizer from a spec, in finetune / probe / lora mode."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from w2s_ray.config import TRAIN_MODES
from w2s_ray.errors import UserError, unknown_name
from w2s_ray.models.arch import (
    drop_pooler,
    from_pretrained,
    hidden_size,
    is_decoder,
    keep_layers,
    load_config,
    quiet_transformers,
)
from w2s_ray.models.heads import POOLING_CHOICES, ScoreModel, resolve_pooling
from w2s_ray.models.spec import ModelSpec, parse_model_spec

# Attention projections LoRA adapts, per model_type; types not listed use peft's defaults.
LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "mpnet": ["q", "k", "v"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
_CONV1D_TYPES = {"gpt2"}  # GPT-2 stores projections as Conv1D (weights transposed)


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """Tokenizer that truncates on the left (the end of a text matters most), pads right, has a pad token."""
    from transformers import AutoTokenizer

    with quiet_transformers():
        tok = from_pretrained(AutoTokenizer.from_pretrained, source, accept=lambda t: t.vocab_size > 0)
    tok.truncation_side = "left"
    tok.padding_side = "right"
    if tok.pad_token is None:
        for candidate in (tok.eos_token, tok.bos_token, tok.unk_token):
            if candidate is not None:
                tok.pad_token = candidate
                break
        else:
            tok.add_special_tokens({"pad_token": "[PAD]"})
    return tok


def load_body(source: str, config: Any, layers: int | None, dtype: torch.dtype) -> nn.Module:
    """Pretrained body (no LM head, no pooler), truncated to `layers` blocks.

    Only the kept layers' weights are read. Weights the checkpoint lacks (other than a pooler)
    are an error: a silently random-initialised body would make every result meaningless.
    """
    from transformers import AutoModel

    with quiet_transformers():
        body, info = from_pretrained(
            AutoModel.from_pretrained, source, config=config, dtype=dtype, output_loading_info=True
        )
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith("pooler.")]
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        raise UserError(f"checkpoint {source!r} lacks {len(missing)} weights of {type(body).__name__}: {shown}")
    drop_pooler(body)
    if layers is not None:
        keep_layers(body, layers)
    return body


def add_lora(body: nn.Module, model_type: str, r: int, alpha: float, seed: int) -> nn.Module:
    """Wrap `body` with LoRA adapters on its attention projections (base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    if r < 1:
        raise UserError(f"lora_r must be >= 1, got {r}")
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft's hint says int; it scales by any number
        lora_dropout=0.0,
        target_modules=LORA_TARGETS.get(model_type),
        fan_in_fan_out=model_type in _CONV1D_TYPES,
    )
    with torch.random.fork_rng(devices=[]):  # seeded adapter init, global RNG untouched
        torch.manual_seed(seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft probes deprecated HF APIs
                return get_peft_model(body, config)
        except ValueError as exc:
            raise UserError(
                f"cannot add LoRA adapters to {model_type!r} (zero layers, or unknown attention "
                f"module names; known types: {', '.join(sorted(LORA_TARGETS))}): {exc}".splitlines()[0]
            ) from None


def build_model(
    spec: str,
    mode: str = "finetune",
    pooling: str = "auto",
    lora_r: int = 8,
    seed: int = 0,
    *,
    dropout: float = 0.0,
    lora_alpha: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[ScoreModel, PreTrainedTokenizerBase]:
    """A ScoreModel for `spec` plus its tokenizer.

    mode: "finetune" (all parameters train), "probe" (frozen body, head only), "lora" (LoRA
    adapters on the attention projections + head; lora_alpha defaults to 2 * lora_r).
    pooling: "auto" (mean for encoders, last real token for decoders), "mean", "cls", "last".
    The same seed gives the same head (and adapter) initialisation, hence identical outputs.
    """
    if mode not in TRAIN_MODES:
        raise unknown_name("training mode", mode, TRAIN_MODES)
    if pooling not in POOLING_CHOICES:
        raise unknown_name("pooling", pooling, POOLING_CHOICES)
    # Building is a function of `seed` alone and never shifts the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(parse_model_spec(spec), mode, pooling, lora_r, seed, dropout, lora_alpha, dtype)


def _build(
    parsed: ModelSpec,
    mode: str,
    pooling: str,
    lora_r: int,
    seed: int,
    dropout: float,
    lora_alpha: float | None,
    dtype: torch.dtype,
) -> tuple[ScoreModel, PreTrainedTokenizerBase]:
    source, config, _ = load_config(parsed)
    decoder = is_decoder(config)
    if decoder and hasattr(config, "use_cache"):
        config.use_cache = False  # scoring never generates: no key/value cache to keep
    body = load_body(source, config, parsed.layers, dtype)
    tokenizer = load_tokenizer(source)
    embeddings = body.get_input_embeddings()  # type: ignore[operator]  # a PreTrainedModel, typed as nn.Module
    if embeddings is not None and len(tokenizer) > embeddings.num_embeddings:
        body.resize_token_embeddings(len(tokenizer))  # type: ignore[operator]  # only when a pad token had to be added
    if mode == "lora":
        body = add_lora(body, config.model_type, lora_r, lora_alpha or 2.0 * lora_r, seed)
    model = ScoreModel(
        body,
        hidden_size(config),
        resolve_pooling(pooling, decoder),
        mode,
        decoder=decoder,
        seed=seed,
        dropout=dropout,
        spec=str(parsed),
    )
    return model, tokenizer
