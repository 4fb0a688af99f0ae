"""Model specs: `<source>[@L<k>]`, e.g. `sentence-transformers/all-MiniLM-L6-v2@L2`.

`source` is a known offline provider name, a local directory or a Hugging Face hub id;
`@Lk` keeps the first k transformer layers (`@L0` = embeddings only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from w2s_ray.errors import UserError

_LAYER_SUFFIX = re.compile(r"L(\d+)")


@dataclass(frozen=True)
class ModelSpec:
    """A model source plus an optional layer truncation (None = all layers)."""

    source: str
    layers: int | None = None

    def __str__(self) -> str:
        return self.source if self.layers is None else f"{self.source}@L{self.layers}"


def parse_model_spec(text: str) -> ModelSpec:
    """Parse `<source>[@L<k>]`; raise UserError on malformed input."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"empty model spec {text!r}; expected <model>[@L<layers>]")
    text = text.strip()
    if "@" not in text:
        return ModelSpec(text, None)
    source, _, suffix = text.rpartition("@")
    match = _LAYER_SUFFIX.fullmatch(suffix)
    if not source or match is None:
        raise UserError(
            f"bad model spec {text!r}; expected <model>[@L<layers>] with a non-negative "
            f"integer layer count, e.g. sentence-transformers/all-MiniLM-L6-v2@L2"
        )
    return ModelSpec(source, int(match.group(1)))
