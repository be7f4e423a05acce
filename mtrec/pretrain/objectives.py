"""The self-supervised objectives of pre-training, as the loss module the trainer runs.

* ``next_item``: sequence -> next item contrast, a softmax over the items of every catalog
  (the model's own next-item task on the merged data: a user of one dataset is scored against
  every dataset's items, so each catalog is a source of negatives for the others).
* ``item_contrast``: item <-> item contrast between two augmented views of an item's text
  vector (a random share of its features dropped, then the adapter with its own dropout),
  InfoNCE against the other items of the batch: the adapter learns what the text says about
  the item rather than what tells catalogs apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtrec.models.model import Batch, MultiTaskRecommender
from mtrec.train.loss import task_losses


@dataclass(frozen=True)
class ObjectiveConfig:
    item_contrast: float = 0.1  # weight of the item <-> item contrast (0: off)
    view_drop: float = 0.2  # share of text features each view drops
    temperature: float = 0.1  # of the item contrast's InfoNCE
    items: int = 512  # most items per step in the item contrast
    masked_item: float = 0.0  # weight of masked-item recovery (0: off)
    mask_share: float = 0.15  # share of input items masked

    def __post_init__(self) -> None:
        if self.item_contrast < 0:
            raise ValueError(f"pretrain.item_contrast must be >= 0, got {self.item_contrast}")
        if not 0.0 <= self.view_drop < 1.0:
            raise ValueError(f"pretrain.view_drop must be in [0, 1), got {self.view_drop}")
        if self.temperature <= 0:
            raise ValueError(f"pretrain.temperature must be > 0, got {self.temperature}")
        if self.masked_item < 0 or not 0.0 < self.mask_share < 1.0:
            raise ValueError(f"pretrain.masked_item must be >= 0 and mask_share in (0, 1), "
                             f"got {self.masked_item} and {self.mask_share}")

    def weights(self) -> dict[str, float]:
        """Each objective's weight in the total loss (the ones switched on)."""
        out = {"next_item": 1.0}
        if self.item_contrast > 0:
            out["item_contrast"] = self.item_contrast
        if self.masked_item > 0:
            out["masked_item"] = self.masked_item
        return out


def item_contrast(model: MultiTaskRecommender, items: torch.Tensor, view_drop: float,
                  temperature: float) -> torch.Tensor:
    """InfoNCE between two augmented views of the text vectors of item codes ``items``."""
    if len(items) < 2:  # nothing to contrast (a batch whose targets have no text)
        return model.item_tower.text_vectors.new_zeros((), requires_grad=True)
    text = model.item_tower.text_vectors[items]
    views = []
    for _ in range(2):
        keep = (torch.rand_like(text) >= view_drop).to(text.dtype) / (1.0 - view_drop)
        views.append(F.normalize(model.item_tower.text_item_vectors(text * keep), dim=-1))
    logits = views[0] @ views[1].T / temperature
    labels = torch.arange(len(items), device=logits.device)
    return 0.5 * (F.cross_entropy(logits.float(), labels)
                  + F.cross_entropy(logits.T.float(), labels))


def masked_item(model: MultiTaskRecommender, head: nn.Module, batch: Batch,
                vectors: torch.Tensor, share: float) -> torch.Tensor:
    """Cross-entropy of recovering masked input items of ``batch`` over every item."""
    items = batch.items
    mask = (items > 0) & (torch.rand(items.shape, device=items.device) < share)
    if not mask.any():
        return vectors.sum() * 0.0
    masked = items.masked_fill(mask, -1)  # (-1: the begin token's vector)
    h = model.user_tower(vectors, masked, batch.behaviors, batch.scenarios, batch.gaps)
    logits = head(h[mask]) @ vectors[1:].T
    return F.cross_entropy(logits.float(), items[mask] - 1)


class PretrainLoss(nn.Module):
    """The model plus the pre-training objectives: ``forward(batch)`` -> ``{name: loss}``.
    ``heads`` holds what pre-training alone trains (not saved with the model)."""

    def __init__(self, model: MultiTaskRecommender, config: ObjectiveConfig) -> None:
        super().__init__()
        self.model, self.config = model, config
        dim = model.item_tower.config.dim
        self.heads = nn.ModuleDict(
            {"masked_item": nn.Linear(dim, dim)} if config.masked_item > 0 else {})

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self.model(batch)
        losses = task_losses(self.model, out, batch)
        if self.config.item_contrast > 0:
            items = batch.target[batch.target > 0].unique()
            if len(items) > self.config.items:
                items = items[torch.randperm(len(items))[: self.config.items]]
            has_text = self.model.item_tower.has_text[items]
            losses["item_contrast"] = item_contrast(self.model, items[has_text],
                                                    self.config.view_drop,
                                                    self.config.temperature)
        if self.config.masked_item > 0:
            losses["masked_item"] = masked_item(self.model, self.heads["masked_item"], batch,
                                                out.item_table, self.config.mask_share)
        return losses
