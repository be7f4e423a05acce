"""The multi-task recommender, assembled from built parts.

``MultiTaskRecommender(item_tower, user_tower, mtl, tasks)`` holds no settings of its own:
the towers and the multi-task layer are built by their ``build_*`` functions from their
configs.  ``forward`` gives typed outputs; it computes losses only when given a batch with
labels (``Batch.labels``), and then returns them per task in ``losses``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from mtrec.models.item_tower import ItemTower, ItemTowerConfig, build_item_tower
from mtrec.models.multitask import MultiTaskConfig, MultiTaskLayer
from mtrec.models.text_match import TextMatch, TextMatchConfig, recent_items
from mtrec.models.user_tower import UserTower, UserTowerConfig
from mtrec.tasks import build_tasks
from mtrec.tasks.base import PointwiseTask, TaskOptions
from mtrec.tasks.next_item import NextItemTask
from mtrec.text.encoder import TextEncoderConfig


@dataclass(frozen=True)
class ModelConfig:
    tasks: tuple[str, ...] = ("next_item",)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    item: ItemTowerConfig = field(default_factory=ItemTowerConfig)
    user: UserTowerConfig = field(default_factory=UserTowerConfig)
    mtl: MultiTaskConfig = field(default_factory=MultiTaskConfig)
    match: TextMatchConfig = field(default_factory=TextMatchConfig)
    task_options: TaskOptions = field(default_factory=TaskOptions)


@dataclass
class Batch:
    """Input sequences ``[B, L]`` and the examples ``[T]`` read off their states.

    Example ``t`` uses the state at ``(rows[t], cols[t])`` and scores item ``target[t]`` in
    scenario ``target_scenario[t]``.  ``next_item[t]`` says whether it is a next-item target;
    ``labels[task]`` / ``label_mask[task]`` hold the pointwise labels.
    """

    items: torch.Tensor
    behaviors: torch.Tensor
    scenarios: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    target: torch.Tensor
    target_scenario: torch.Tensor
    next_item: torch.Tensor
    gaps: torch.Tensor | None = None  # [B, L] time-gap bucket to the previous input
    target_gap: torch.Tensor | None = None  # [T] gap bucket from the last input to the target
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    label_mask: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ModelOutput:
    query: torch.Tensor  # [T, D] retrieval query per example (D = dim [+ text_dim])
    item_table: torch.Tensor  # [N + 1, dim] item-tower vectors (inputs, pointwise heads)
    heads: dict[str, torch.Tensor]  # raw pointwise head outputs [T, out_dim]
    retrieval_items: torch.Tensor  # [N + 1, D] what ``query`` is scored against
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


class MultiTaskRecommender(nn.Module):
    item_tower: ItemTower
    user_tower: UserTower
    mtl: MultiTaskLayer | None
    next_item: NextItemTask | None
    def __init__(self, item_tower: ItemTower, user_tower: UserTower,
                 mtl: MultiTaskLayer | None, next_item: NextItemTask | None,
                 pointwise: dict[str, PointwiseTask], n_scenarios: int,
                 text_tuner: TextTuner | None = None,
                 text_match: TextMatch | None = None) -> None:
        super().__init__()
        self.item_tower, self.user_tower, self.mtl = item_tower, user_tower, mtl
        self.text_tuner, self.text_match = text_tuner, text_match
        self.next_item = next_item
        self.pointwise = nn.ModuleDict(pointwise)
        self.query_scenario = nn.Embedding(n_scenarios, item_tower.config.dim)
        nn.init.zeros_(self.query_scenario.weight)
        self.target_gap = nn.Embedding(user_tower.gap.num_embeddings, item_tower.config.dim)
        nn.init.zeros_(self.target_gap.weight)

    @property
    def task_names(self) -> tuple[str, ...]:
        head = ("next_item",) if self.next_item is not None else ()
        return head + tuple(self.pointwise)

    def pointwise_tasks(self) -> dict[str, PointwiseTask]:
        return {name: cast(PointwiseTask, task) for name, task in self.pointwise.items()}

    def states(self, item_table: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The user state per example, plus how long after the last input it happens."""
        h = self.user_tower(item_table, batch.items, batch.behaviors, batch.scenarios,
                            batch.gaps)
        h = h[batch.rows, batch.cols]
        if batch.target_gap is None:
            return h
        gap = batch.target_gap
        if self.training:  # serving may not know the time: learn to do without it
            gap = gap * (torch.rand(gap.shape, device=gap.device) >= 0.2)
        return h + self.target_gap(gap)

    def heads(self, h: torch.Tensor, v: torch.Tensor,
              scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mtl is None:
            return {}
        features = self.mtl(h, v, scenario)
        return {name: task.head(features[name]) for name, task in self.pointwise_tasks().items()}

    def forward(self, batch: Batch, item_table: torch.Tensor | None = None) -> ModelOutput:
        text = None  # fine-tuned text rows of this step, when the encoder is trained
        if item_table is not None:
            table = item_table
        elif self.text_tuner is not None and self.training:
            items = torch.cat([batch.items.flatten(), batch.target]).clamp(min=0).unique()
            text = self.text_tuner.refresh(self.item_tower.text_vectors, items[items > 0])
            table = self.item_tower(text_vectors=text)
        else:
            table = self.item_tower()
        h = self.states(table, batch)
        query = self.retrieval_query(h + self.query_scenario(batch.target_scenario),
                                     recent_items(batch.items, batch.rows, batch.cols,
                                                  self.match_lags), text)
        heads = self.heads(h, table[batch.target], batch.target_scenario)
        out = ModelOutput(query=query, item_table=table, heads=heads,
                          retrieval_items=self.retrieval_items(table, text))
        if self.training or batch.labels or batch.next_item.any():
            out.losses = self.losses(out, batch)
        return out

    @property
    def match_lags(self) -> int:
        return self.text_match.config.lags if self.text_match is not None else 1

    def retrieval_query(self, query: torch.Tensor, recent: torch.Tensor,
                        text: torch.Tensor | None = None) -> torch.Tensor:
        """``query`` ``[T, dim]`` plus the text-match part from ``recent`` ``[T, lags]``."""
        if self.text_match is None or not self.text_match.active:
            return query
        unit = TextMatch.unit(self.item_tower.text_vectors if text is None else text)
        return torch.cat([query, self.text_match.query(unit, recent).to(query.dtype)], -1)

    def retrieval_items(self, table: torch.Tensor,
                        text: torch.Tensor | None = None) -> torch.Tensor:
        """The vectors next-item queries are scored against, ``[N + 1, D]``."""
        if self.text_match is None or not self.text_match.active:
            return table
        unit = TextMatch.unit(self.item_tower.text_vectors if text is None else text)
        return torch.cat([table, unit.to(table.dtype)], -1)

    def losses(self, out: ModelOutput, batch: Batch) -> dict[str, torch.Tensor]:
        losses = {}
        if self.next_item is not None and batch.next_item.any():
            sel = batch.next_item
            losses["next_item"] = self.next_item.loss(out.query[sel], out.retrieval_items[1:],
                                                      batch.target[sel])
        for name, task in self.pointwise_tasks().items():
            mask = batch.label_mask[name]
            if mask.any():
                sub = {k: v[mask] for k, v in out.heads.items()}
                losses[name] = task.loss(sub, batch.labels[name][mask])
            else:  # no labelled example in this batch: a zero that keeps the graph the same
                losses[name] = out.heads[name].sum() * 0.0
        if self.next_item is not None and "next_item" not in losses:
            losses["next_item"] = out.query.sum() * 0.0
        return losses

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters all tasks share (the user tower's last layer), for GradNorm."""
        return list(self.user_tower.encoder.layers[-1].parameters())


class TextTuner(nn.Module):
    """Fine-tunes the text encoder (LoRA or full) inside training.

    Each step re-encodes only the batch's items with gradients; the rest of the catalog
    keeps its cached vectors.  :meth:`refresh_all` re-encodes the whole catalog after
    training, so inference reads the buffer alone and never needs the encoder.
    """

    def __init__(self, encoder: nn.Module, texts: list[str]) -> None:
        super().__init__()
        self.encoder, self.texts = encoder, texts

    def refresh(self, cached: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.tokenize([self.texts[i] for i in items.tolist()])  # type: ignore[operator]
        fresh = self.encoder(tokens["input_ids"], tokens["attention_mask"]).to(cached.dtype)
        has_text = torch.tensor([bool(self.texts[i]) for i in items.tolist()])
        fresh = fresh * has_text.unsqueeze(-1)
        return cached.index_copy(0, items, fresh)

    @torch.no_grad()
    def refresh_all(self, cached: torch.Tensor) -> None:
        vectors = self.encoder.encode(self.texts[1:])  # type: ignore[operator]
        mask = torch.tensor([bool(t) for t in self.texts[1:]]).unsqueeze(-1)
        cached[1:] = torch.from_numpy(vectors) * mask


def build_model(config: ModelConfig, n_items: int, n_scenarios: int,
                text_vectors: torch.Tensor | None,
                text_tuner: TextTuner | None = None) -> MultiTaskRecommender:
    """Build towers, multi-task layer and task heads from ``config``."""
    if config.item.dim % config.user.heads:
        raise ValueError(f"model.user.heads ({config.user.heads}) must divide model.item.dim "
                         f"({config.item.dim})")
    item_tower = build_item_tower(config.item, n_items, n_scenarios, text_vectors)
    user_tower = UserTower(config.user, config.item.dim, n_scenarios)
    next_item, pointwise = build_tasks(config.tasks, config.task_options, n_items,
                                       config.mtl.expert_dim, config.mtl.tower_dim)
    mtl = (MultiTaskLayer(config.mtl, config.item.dim, n_scenarios, tuple(pointwise))
           if pointwise else None)
    match = (TextMatch(config.match) if config.match.enabled and next_item is not None
             and item_tower.adapter is not None else None)
    return MultiTaskRecommender(item_tower, user_tower, mtl, next_item, pointwise, n_scenarios,
                                text_tuner, match)
