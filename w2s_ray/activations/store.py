"""The activation store: frozen hidden states keyed per text, in the stage cache.

One model's activations (every hidden state, pooled, float16) live under
``<cache>/activations/<model_key>/<shard>/``. ``model_key`` hashes the model spec, pooling and
max length; each text's key hashes ``model_key`` with the text's token ids, so any split, seed
or task holding the same text finds it again. A shard is one extraction's texts
(``keys.npy``, ``hidden.npy`` of shape [texts, layers + 1, hidden]), built in a private
directory and published atomically by :class:`w2s_ray.pipeline.cache.StageCache`; readers only ever see
complete shards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from w2s_ray.pipeline.cache import StageCache, stage_key

STORE_FORMAT = 2  # bump when the layout, pooling or truncation of stored activations changes (2: left truncation)
KEY_BYTES = 16  # per-text keys: the first 16 bytes of a sha256


def model_key(model: str, pooling: str, max_length: int) -> str:
    """The key of one model's activations: spec, resolved pooling, max length, format."""
    return stage_key("activations", {"model": model, "pooling": pooling, "max_length": max_length,
                                     "dtype": "float16", "store_format": STORE_FORMAT})


def text_keys(mkey: str, token_ids: Iterable[Sequence[int]]) -> list[bytes]:
    """Per-text keys: sha256 of the model key and the text's token ids."""
    out = []
    for ids in token_ids:
        digest = hashlib.sha256(mkey.encode())
        digest.update(json.dumps(list(ids), separators=(",", ":")).encode())
        out.append(digest.digest()[:KEY_BYTES])
    return out


class ActivationStore:
    """Reads and publishes one model's activation shards."""

    def __init__(self, cache: StageCache, mkey: str) -> None:
        self.cache = cache
        self.mkey = mkey
        self.kind = f"activations/{mkey}"
        self._index: dict[bytes, tuple[str, int]] | None = None

    def index(self, refresh: bool = False) -> dict[bytes, tuple[str, int]]:
        """Text key -> (shard, row) over every complete shard."""
        if self._index is None or refresh:
            index: dict[bytes, tuple[str, int]] = {}
            for shard in self.cache.entries(self.kind):
                path = self.cache.get(self.kind, shard)
                if path is None:
                    continue
                for row, key in enumerate(np.load(path / "keys.npy")):
                    index.setdefault(key.tobytes(), (shard, row))
            self._index = index
        return self._index

    def missing(self, keys: Sequence[bytes]) -> list[int]:
        """Positions of ``keys`` not in any shard."""
        index = self.index(refresh=True)
        return [i for i, k in enumerate(keys) if k not in index]

    def read(self, keys: Sequence[bytes]) -> np.ndarray:
        """Activations for ``keys`` in order: float16 [len(keys), layers + 1, hidden]."""
        index = self.index()
        if any(k not in index for k in keys):
            index = self.index(refresh=True)
        lost = [k.hex() for k in keys if k not in index]
        if lost:
            raise KeyError(f"{len(lost)} texts have no stored activations in {self.kind} (e.g. {lost[0]})")
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for pos, key in enumerate(keys):
            shard, row = index[key]
            by_shard.setdefault(shard, []).append((pos, row))
        out: np.ndarray | None = None
        for shard, pairs in by_shard.items():
            path = self.cache.get(self.kind, shard)
            assert path is not None
            hidden = np.load(path / "hidden.npy", mmap_mode="r")
            if out is None:
                out = np.empty((len(keys), *hidden.shape[1:]), dtype=np.float16)
            positions, rows = (np.asarray(x) for x in zip(*pairs))
            out[positions] = hidden[rows]
        assert out is not None
        return out

    def publish(self, keys: Sequence[bytes], hidden: np.ndarray, meta: dict) -> Path:
        """Publish one shard atomically; its key is the hash of its text keys."""
        shard = hashlib.sha256(b"".join(sorted(keys))).hexdigest()[:24]

        def build(tmp: Path) -> None:
            np.save(tmp / "keys.npy", np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, KEY_BYTES))
            np.save(tmp / "hidden.npy", hidden.astype(np.float16, copy=False))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

        path = self.cache.put(self.kind, shard, build)
        self._index = None
        return path
