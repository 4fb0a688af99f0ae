"""Pooling registry and the score model: a transformer body plus a Linear(hidden, 1) head.

Every model emits ONE scalar per example: a logit z (p(1) = sigmoid(z)) for classification,
or a reward r for pairwise reward modelling (the trainer takes margins).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from w2s_ray.errors import unknown_name

Pooling = Callable[[Tensor, Tensor], Tensor]


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of the hidden states over real (mask == 1) tokens."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def cls_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The first position (BERT's [CLS]); assumes right padding."""
    return hidden[:, 0]


def last_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The last real token of each row, whichever side the padding is on."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * (mask > 0)).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLINGS: dict[str, Pooling] = {"mean": mean_pool, "cls": cls_pool, "last": last_pool}
POOLING_CHOICES: tuple[str, ...] = ("auto", *POOLINGS)


def resolve_pooling(pooling: str, decoder: bool) -> str:
    """'auto' -> 'last' for decoders, 'mean' for encoders (sentence encoders are mean-pooled)."""
    if pooling == "auto":
        return "last" if decoder else "mean"
    if pooling not in POOLINGS:
        raise unknown_name("pooling", pooling, POOLING_CHOICES)
    return pooling


class ScoreModel(nn.Module):
    """`forward(input_ids, attention_mask) -> Tensor[N]`: one scalar score per example.

    In mode "probe" the body is frozen, always in eval mode, and run under no_grad, so only
    the head trains and backward never touches the body.
    """

    def __init__(
        self,
        body: nn.Module,
        hidden_size: int,
        pooling: str,
        mode: str,
        *,
        decoder: bool,
        seed: int = 0,
        dropout: float = 0.0,
        head_init_std: float = 0.02,
        spec: str = "",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise unknown_name("pooling", pooling, POOLINGS)
        self.body = body
        self.pooling = pooling
        self.mode = mode
        self.decoder = decoder
        self.spec = spec
        self.hidden_size = hidden_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)
        gen = torch.Generator().manual_seed(seed)  # seeded without touching the global RNG
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen) * head_init_std)
            self.head.bias.zero_()
        if mode == "probe":
            self.body.requires_grad_(False)
            self.body.eval()

    def train(self, mode: bool = True) -> "ScoreModel":
        super().train(mode)
        if self.mode == "probe":
            self.body.eval()
        return self

    def features(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Pooled body features, shape [N, hidden]."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return POOLINGS[self.pooling](hidden, attention_mask)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if self.mode == "probe":
            with torch.no_grad():
                feats = self.features(input_ids, attention_mask)
        else:
            feats = self.features(input_ids, attention_mask)
        feats = feats.to(self.head.weight.dtype)
        return self.head(self.dropout(feats)).squeeze(-1)
