"""Item tower: an adapter over the item's text vector + an optional ID embedding + scenario.

Items without text (ID-only datasets such as JData) use the ID embedding alone; items without
training history (cold) use the text alone: the ID embedding is dropped for a random share of
items while training (``id_dropout``) so the text path has to carry the item by itself, and
``cold_items`` can be switched to text only at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtrec.models.fast_ops import FastDropout


@dataclass(frozen=True)
class ItemTowerConfig:
    dim: int = 64
    use_text: bool = True
    use_id: bool = True
    adapter: str = "mlp"  # "mlp" or "moe"
    n_experts: int = 4  # moe adapter only
    id_dropout: float = 0.1
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.adapter not in ("mlp", "moe"):
            raise ValueError(f"item.adapter must be 'mlp' or 'moe', got {self.adapter!r}")
        if not (self.use_text or self.use_id):
            raise ValueError("the item tower needs use_text or use_id")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"item.id_dropout must be in [0, 1), got {self.id_dropout}")


class MLPAdapter(nn.Module):
    """Project a (frozen) text vector into the model space."""

    def __init__(self, text_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(), FastDropout(dropout),
                                 nn.Linear(dim, dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.net(text)


class MoEAdapter(nn.Module):
    """A softmax-gated mixture of linear experts over the text vector (UniSRec-style)."""

    def __init__(self, text_dim: int, dim: int, n_experts: int, dropout: float) -> None:
        super().__init__()
        self.dropout = FastDropout(dropout)
        self.centers = nn.Parameter(torch.zeros(n_experts, text_dim))
        self.experts = nn.Parameter(torch.randn(n_experts, text_dim, dim) * text_dim ** -0.5)
        self.gate = nn.Linear(text_dim, n_experts)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        gates = torch.softmax(self.gate(text), dim=-1)  # [N, E]
        outs = torch.einsum("ned,edk->nek", text.unsqueeze(1) - self.centers, self.experts)
        return self.dropout((gates.unsqueeze(-1) * outs).sum(1))


class ItemTower(nn.Module):
    """Vectors for every catalog item (row 0 = padding) from built parts.

    ``text_vectors`` is the cached encoder output ``[N + 1, T]`` (a buffer; refreshed rows may
    be passed to :meth:`forward` when the encoder is fine-tuned).
    """

    text_vectors: torch.Tensor
    has_text: torch.Tensor
    text_only: torch.Tensor

    def __init__(self, config: ItemTowerConfig, n_items: int, n_scenarios: int,
                 text_vectors: torch.Tensor | None, adapter: nn.Module | None) -> None:
        super().__init__()
        self.config = config
        self.n_items = n_items
        vectors = text_vectors if text_vectors is not None else torch.zeros(n_items + 1, 0)
        self.register_buffer("text_vectors", vectors, persistent=True)
        self.register_buffer("has_text", vectors.abs().sum(-1) > 0)
        self.register_buffer("text_only", torch.zeros(n_items + 1, dtype=torch.bool))
        self.adapter = adapter
        self.ids = nn.Embedding(n_items + 1, config.dim, padding_idx=0) if config.use_id else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.02)
            with torch.no_grad():
                self.ids.weight[0].zero_()
        self.scenario = nn.Embedding(n_scenarios, config.dim)
        nn.init.zeros_(self.scenario.weight)
        self.norm = nn.LayerNorm(config.dim)

    def set_text_only(self, items: torch.Tensor) -> None:
        """Serve these items (e.g. cold ones) from their text alone; requires text."""
        self.text_only.zero_()
        self.text_only[items] = self.has_text[items]

    def forward(self, item_scenario: torch.Tensor | None = None,
                text_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """All item vectors ``[N + 1, dim]``; row 0 is zero."""
        vec = torch.zeros(self.n_items + 1, self.config.dim, device=self.text_vectors.device)
        if self.adapter is not None and self.config.use_text:
            text = text_vectors if text_vectors is not None else self.text_vectors
            vec = vec + self.adapter(text) * self.has_text.unsqueeze(-1)
        if self.ids is not None:
            keep = ~self.text_only
            if self.training and self.config.id_dropout > 0 and self.adapter is not None:
                keep = keep & ((torch.rand(len(keep), device=keep.device)
                                >= self.config.id_dropout) | ~self.has_text)
            vec = vec + self.ids.weight * keep.unsqueeze(-1)
        if item_scenario is not None:
            vec = vec + self.scenario(item_scenario)
        out = self.norm(vec)
        return out * (torch.arange(len(out), device=out.device) > 0).unsqueeze(-1)


    def text_item_vectors(self, text: torch.Tensor) -> torch.Tensor:
        """Vectors ``[M, dim]`` of items known only by their text ``[M, T]`` (new items at
        serving time: no ID embedding, as for items unseen in training)."""
        if self.adapter is None:
            raise ValueError("this item tower has no text adapter (trained without text)")
        return self.norm(self.adapter(text) * (text.abs().sum(-1, keepdim=True) > 0))


def build_item_tower(config: ItemTowerConfig, n_items: int, n_scenarios: int,
                     text_vectors: torch.Tensor | None) -> ItemTower:
    """Build the adapter that fits ``config`` and the tower around it."""
    adapter: nn.Module | None = None
    if config.use_text and text_vectors is not None and text_vectors.shape[1] > 0:
        t_dim = text_vectors.shape[1]
        adapter = (MLPAdapter(t_dim, config.dim, config.dropout) if config.adapter == "mlp"
                   else MoEAdapter(t_dim, config.dim, config.n_experts, config.dropout))
    return ItemTower(config, n_items, n_scenarios, text_vectors, adapter)
