"""Per-split features of one prepared dataset, read from the activation store.

:class:`SplitActivations` turns a ``(model spec, layer)`` into arrays aligned with the
splits' rows: ``[n, hidden]`` for single texts, ``[n, 2, hidden]`` for pairs. A spec
truncated with ``@Lk`` reads hidden state ``k`` of the full model's activations (the first k
layers are the same weights), so a whole ladder costs one extraction. Missing texts are
extracted once through the executor (a Ray Train job in a search) and published to the store.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from w2s_ray.activations.extract import ExtractJob
from w2s_ray.activations.store import ActivationStore, model_key, text_keys
from w2s_ray.errors import UserError
from w2s_ray.pipeline.cache import StageCache
from w2s_ray.pipeline.data import PreparedData

TRUNCATION_SIDE = "left"  # part of every activation key (through the store format)


@dataclass(frozen=True)
class FeatureSource:
    """Which stored activations a (spec, layer) reads: the full model and a hidden-state index."""

    model: str  # the untruncated spec
    layer: int  # 0 = embeddings, k = after block k
    num_layers: int


def feature_source(spec: str, layer: int | None) -> FeatureSource:
    """Resolve ``spec`` (maybe ``@Lk``) and ``layer`` (None = the spec's last) to stored activations."""
    from w2s_ray.models import parse_model_spec
    from w2s_ray.models.arch import load_config

    parsed = parse_model_spec(spec)
    _, _, total = load_config(parsed)
    top = parsed.layers if parsed.layers is not None else total
    chosen = top if layer is None else int(layer)
    if not 0 <= chosen <= top:
        raise UserError(f"probe layer {layer} is outside 0..{top} for model {spec!r}")
    return FeatureSource(parsed.source, chosen, total)


def resolved_pooling(model: str, pooling: str) -> str:
    """'auto' -> the model's convention (mean for encoders, last token for decoders)."""
    from w2s_ray.models import parse_model_spec
    from w2s_ray.models.arch import is_decoder, load_config
    from w2s_ray.models.heads import resolve_pooling

    _, config, _ = load_config(parse_model_spec(model))
    return resolve_pooling(pooling, is_decoder(config))


class _Float32Memo:
    """float32 feature arrays per (cache, dataset, model, pooling, length, layer), least recently used
    dropped first beyond ``limit_bytes``."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._items: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()

    def get(self, key: tuple) -> dict[str, np.ndarray] | None:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return None

    def put(self, key: tuple, arrays: dict[str, np.ndarray]) -> None:
        self._items[key] = arrays
        while len(self._items) > 1 and self.nbytes() > self.limit_bytes:
            self._items.popitem(last=False)

    def nbytes(self) -> int:
        return sum(a.nbytes for arrays in self._items.values() for a in arrays.values())


_FLOAT32 = _Float32Memo(limit_bytes=1 << 30)


def _texts(inputs: list, kind: str) -> list[str]:
    return [t for pair in inputs for t in pair] if kind == "pairwise" else list(inputs)


@dataclass
class SplitActivations:
    """Activations of a prepared dataset's texts, per model, loaded once per process."""

    data: PreparedData
    cache_uri: str
    max_length: int
    pooling: str = "auto"
    batch_size: int = 64
    _hidden: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # model -> split -> fp16
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)  # model -> (store, keys, token ids)

    def get(self, spec: str, layer: int | None, executor: Any = None) -> dict[str, np.ndarray]:
        """float32 features per split for ``spec`` at ``layer`` (extracting what is missing).

        The arrays are read-only and shared: a process that runs many trials (Tune's actor reuse)
        converts each (dataset, model, layer) from the stored float16 once."""
        src = feature_source(spec, layer)
        memo_key = (self.cache_uri, self.data.fingerprint, src.model, self.pooling, self.max_length, src.layer)
        found = _FLOAT32.get(memo_key)
        if found is not None:
            return dict(found)
        hidden = self.hidden(src.model, executor)
        out = {name: arr[..., src.layer, :].astype(np.float32) for name, arr in hidden.items()}
        for arr in out.values():
            arr.flags.writeable = False
        _FLOAT32.put(memo_key, out)
        return dict(out)

    def hidden(self, model: str, executor: Any = None) -> dict[str, np.ndarray]:
        """Every hidden state of ``model`` per split: [n, layers + 1, d] (pairs: [n, 2, layers + 1, d])."""
        if model not in self._hidden:
            self._hidden[model] = self._load(model, executor)
        return self._hidden[model]

    def ensure(self, model: str, executor: Any) -> int:
        """Extract ``model``'s missing texts; returns how many were extracted (0 when all cached)."""
        store, keys, token_ids = self._keys(model)
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        unique = list(first)
        missing = [first[unique[p]] for p in store.missing(unique)]
        if not missing:
            return 0
        if executor is None:
            raise RuntimeError(f"activations of {model} are missing and no executor was given to extract them")
        job = ExtractJob(model=model, pooling=resolved_pooling(model, self.pooling), max_length=self.max_length,
                         mkey=store.mkey, token_ids=[token_ids[i] for i in missing],
                         keys=[keys[i].hex() for i in missing], cache_uri=self.cache_uri,
                         batch_size=self.batch_size, meta={"task": self.data.task})
        print(f"extracting activations of {model} for {len(missing)} texts (the rest are cached)", flush=True)
        executor.run(job, name=f"activations-{store.mkey}-{len(missing)}")
        return len(missing)

    def preloaded(self, models: list[str]) -> "SplitActivations":
        """A copy holding only ``models``' arrays (what a trial needs shipped)."""
        return SplitActivations(self.data, self.cache_uri, self.max_length, self.pooling, self.batch_size,
                                {m: self._hidden[m] for m in models if m in self._hidden})

    # ------------------------------------------------------------------------------------------
    def _keys(self, model: str) -> tuple[ActivationStore, list[bytes], list[list[int]]]:
        if model not in self._memo:
            self._memo[model] = self._tokenize(model)
        return self._memo[model]

    def _tokenize(self, model: str) -> tuple[ActivationStore, list[bytes], list[list[int]]]:
        from w2s_ray.models import parse_model_spec, resolve_model_source
        from w2s_ray.models.build import load_tokenizer

        tokenizer = load_tokenizer(resolve_model_source(parse_model_spec(model)))
        # every task puts what decides the label last (the question, the answer, the move, the
        # assistant's reply): a long text loses its beginning, never its end
        tokenizer.truncation_side = TRUNCATION_SIDE
        texts = [t for split in self.data.splits.values() for t in _texts(split.inputs, self.data.kind)]
        token_ids = tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        mkey = model_key(model, resolved_pooling(model, self.pooling), self.max_length)
        return ActivationStore(StageCache(self.cache_uri), mkey), text_keys(mkey, token_ids), token_ids

    def _load(self, model: str, executor: Any) -> dict[str, np.ndarray]:
        self.ensure(model, executor)
        store, keys, _ = self._keys(model)
        flat = store.read(keys)
        out, pos = {}, 0
        for name, split in self.data.splits.items():
            n = len(split) * (2 if self.data.kind == "pairwise" else 1)
            arr = flat[pos: pos + n]
            pos += n
            out[name] = arr.reshape(len(split), 2, *arr.shape[1:]) if self.data.kind == "pairwise" else arr
        return out
