"""User tower: a causal transformer over the user's recent item vectors.

Each input position adds the item vector, a learned position, the behaviours of that
interaction (a sum over its behaviour bits), its scenario and the time since the previous
interaction (log-scale buckets; 0 when unknown).  Position 0 is a learned
begin-of-sequence token, so the state at position ``t`` has seen interactions ``< t`` and
predicts interaction ``t``; a user with no history still gets a state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtrec.data.schema import BEHAVIORS
from mtrec.models.fast_ops import FastDropout, fast_dropouts

GAP_BUCKETS = 20  # time-gap buckets, shared with mtrec.models.batches


@dataclass(frozen=True)
class UserTowerConfig:
    max_len: int = 0  # the history window; 0: from the data (mtrec/train/budget.py)
    layers: int = 2
    heads: int = 2
    dropout: float = 0.3
    ffn_mult: int = 4

    def __post_init__(self) -> None:
        if self.max_len == 1 or self.max_len < 0:
            raise ValueError(f"user.max_len must be >= 2, or 0 for a window from the data, "
                             f"got {self.max_len}")


class UserTower(nn.Module):
    bits: torch.Tensor
    def __init__(self, config: UserTowerConfig, dim: int, n_scenarios: int) -> None:
        super().__init__()
        if config.max_len < 2:
            raise ValueError("user.max_len is 0 (a window from the data): give it, or resolve "
                             "it from the training data first (mtrec.train.budget)")
        self.config = config
        self.bos = nn.Parameter(torch.randn(dim) * 0.02)
        self.position = nn.Embedding(config.max_len, dim)
        self.behavior = nn.Parameter(torch.zeros(len(BEHAVIORS), dim))
        self.scenario = nn.Embedding(n_scenarios, dim)
        self.gap = nn.Embedding(GAP_BUCKETS, dim)
        nn.init.zeros_(self.scenario.weight)
        nn.init.zeros_(self.gap.weight)
        nn.init.normal_(self.position.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, config.heads, dim * config.ffn_mult, config.dropout, activation="gelu",
            batch_first=True, norm_first=True)
        self.encoder = fast_dropouts(
            nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False))
        self.input_norm = nn.LayerNorm(dim)
        self.out_norm = nn.LayerNorm(dim)
        self.dropout = FastDropout(config.dropout)
        self.register_buffer("bits", 1 << torch.arange(len(BEHAVIORS)), persistent=False)

    def forward(self, item_vectors: torch.Tensor, items: torch.Tensor, behaviors: torch.Tensor,
                scenarios: torch.Tensor, gaps: torch.Tensor | None = None) -> torch.Tensor:
        """States ``[B, L, dim]`` for inputs ``items``/``behaviors``/``scenarios`` ``[B, L]``.

        ``items`` holds item codes with 0 = padding and -1 = the begin token; padding must
        only follow real positions (right padding).
        """
        bos = items < 0
        x = item_vectors[items.clamp(min=0)]
        x = torch.where(bos.unsqueeze(-1), self.bos.expand_as(x), x)
        # bit i of each (non-negative) bitmask; not ``&``, which ONNX opset 17 lacks
        bit_matrix = (behaviors.unsqueeze(-1) // self.bits % 2).to(x.dtype)
        x = x + bit_matrix @ self.behavior + self.scenario(scenarios)
        if gaps is not None:
            x = x + self.gap(gaps)
        x = x + self.position.weight[: items.shape[1]]
        x = self.dropout(self.input_norm(x))
        pad = items == 0
        length = items.shape[1]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), 1)
        h = self.encoder(x, mask=causal, src_key_padding_mask=pad)
        return self.out_norm(h)
