"""Turning task rows into token batches, for single texts and for pairs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Inputs = list  # list[str] for classify, list[tuple[str, str]] for pairwise


@dataclass
class Encoded:
    """Tokenized inputs: one token list per example (classify) or two (pairwise)."""

    kind: str
    ids_a: list[list[int]]
    ids_b: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.ids_a)

    def subset(self, index: Sequence[int] | np.ndarray) -> "Encoded":
        pick = list(index)
        return Encoded(
            self.kind,
            [self.ids_a[i] for i in pick],
            None if self.ids_b is None else [self.ids_b[i] for i in pick],
        )


def inputs_from_rows(rows: dict, kind: str) -> Inputs:
    """Model inputs from a dataset's columns (``text`` or ``text_a``/``text_b``)."""
    if kind == "pairwise":
        return list(zip(rows["text_a"], rows["text_b"]))
    return list(rows["text"])


def encode(tokenizer: Any, inputs: Inputs, kind: str, max_length: int) -> Encoded:
    """Tokenize without padding; batches are padded dynamically."""
    def tok(texts: list[str]) -> list[list[int]]:
        return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]

    if kind == "pairwise":
        return Encoded(kind, tok([a for a, _ in inputs]), tok([b for _, b in inputs]))
    return Encoded(kind, tok(inputs))


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def batches(enc: Encoded, order: np.ndarray, batch_size: int, pad_id: int) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (row indices, tensors) in ``order``; pairs are scored as one stacked batch."""
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs = [enc.ids_a[i] for i in idx]
        if enc.ids_b is not None:
            seqs = seqs + [enc.ids_b[i] for i in idx]
        ids, mask = _pad(seqs, pad_id)
        yield idx, {"input_ids": ids, "attention_mask": mask}


def length_order(enc: Encoded) -> np.ndarray:
    """Indices sorted by length: less padding when predicting."""
    lengths = [len(a) + (len(enc.ids_b[i]) if enc.ids_b is not None else 0) for i, a in enumerate(enc.ids_a)]
    return np.argsort(np.asarray(lengths), kind="stable")
