"""The multi-task recommender, assembled from built parts.

``MultiTaskRecommender(item_tower, user_tower, mtl, tasks)`` holds no settings of its own:
the towers and the multi-task layer are built by their ``build_*`` functions from their
configs.  ``forward`` gives typed outputs and no loss: tasks own their losses.  The
scoring API (``encode`` -> ``catalog_logits`` / ``task_scores``) is what evaluation, the
``Recommender`` and the service call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mtrec.models.fast_ops import out_of_scope
from mtrec.models.item_tower import ItemTower, ItemTowerConfig, build_item_tower
from mtrec.models.layers.base import MultiTaskLayer
from mtrec.models.multitask import SCENARIO_KINDS, MultiTaskConfig, build_multitask
from mtrec.models.text_match import TextMatch, TextMatchConfig, recent_items
from mtrec.models.user_tower import UserTower, UserTowerConfig
from mtrec.tasks import build_tasks
from mtrec.tasks.base import PointwiseTask, RetrievalTask, Task, TaskDims, TaskOptions
from mtrec.text.encoder import TextEncoder, TextEncoderConfig


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
    item_scope: torch.Tensor | None = None  # [N + 1] each item's scenario (0: all), if scoped
    scenario: torch.Tensor | None = None  # [T] the scenario each example is scored in


@dataclass
class ItemTables:
    """The item side that user states are scored against (row 0 is padding).

    The model makes them (:meth:`MultiTaskRecommender.item_tables`); the service keeps its
    own copies and grows them as items are added (:meth:`MultiTaskRecommender.tables_for`).
    """

    vectors: torch.Tensor  # [N + 1, dim] item-tower vectors
    retrieval: torch.Tensor  # [N + 1, D] next-item rows (vectors [+ unit text])
    unit: torch.Tensor | None  # [N + 1, text_dim] unit text vectors (text match), or None
    # [N + 1] the scenario code of each item (0: every scenario) on a multi-scenario
    # catalog: an item is ranked only for targets in its scenario; None: nothing scoped
    scope: torch.Tensor | None = None



@dataclass
class UserStates:
    """Encoded users: one row per example (a user at a point of their history)."""

    h: torch.Tensor  # [T, dim] the state the pointwise heads read
    query: torch.Tensor  # [T, D] the next-item query (state + scenario [+ text match])
    scenario: torch.Tensor  # [T] the scenario the items are scored in


class MultiTaskRecommender(nn.Module):
    """Towers, a multi-task layer and tasks.  One scoring path serves training, evaluation,
    the ``Recommender`` and the service: :meth:`encode` users into :class:`UserStates`,
    then :meth:`catalog_logits` (the whole catalog) or :meth:`task_scores` (given items,
    per task).  ``forward`` returns outputs only; each task owns its loss
    (:func:`mtrec.train.loss.task_losses`)."""

    item_tower: ItemTower
    user_tower: UserTower
    mtl: MultiTaskLayer | None

    def __init__(self, item_tower: ItemTower, user_tower: UserTower,
                 mtl: MultiTaskLayer | None, tasks: dict[str, Task], n_scenarios: int,
                 text_tuner: TextTuner | None = None,
                 text_match: TextMatch | None = None) -> None:
        super().__init__()
        self.item_tower, self.user_tower, self.mtl = item_tower, user_tower, mtl
        self.text_tuner, self.text_match = text_tuner, text_match
        self.tasks = nn.ModuleDict(tasks)
        # plain lookups for the per-request path (the modules stay registered in ``tasks``)
        self.__dict__["_by_kind"] = (
            next((t for t in tasks.values() if isinstance(t, RetrievalTask)), None),
            {n: t for n, t in tasks.items() if isinstance(t, PointwiseTask)})
        self.query_scenario = nn.Embedding(n_scenarios, item_tower.config.dim)
        nn.init.zeros_(self.query_scenario.weight)
        self.target_gap = nn.Embedding(user_tower.gap.num_embeddings, item_tower.config.dim)
        nn.init.zeros_(self.target_gap.weight)
        # each item's scenario (0: all) on a multi-scenario catalog; empty: nothing scoped
        self.register_buffer("item_scope", torch.zeros(0, dtype=torch.long), persistent=False)

    def set_item_scope(self, scenarios: np.ndarray | torch.Tensor) -> None:
        """Rank each item (codes 0..N) only for targets in its scenario (0: every one)."""
        scope = torch.as_tensor(np.asarray(scenarios), dtype=torch.long)
        self.item_scope = scope if bool(scope.any()) else scope[:0]

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.tasks)

    @property
    def retrieval_task(self) -> RetrievalTask | None:
        """The task that ranks the catalog (``next_item``), if the model has one."""
        task: RetrievalTask | None = self.__dict__["_by_kind"][0]
        return task

    def pointwise_tasks(self) -> dict[str, PointwiseTask]:
        return dict(self.__dict__["_by_kind"][1])

    # ------------------------------------------------------------------ item side
    def item_tables(self, text: torch.Tensor | None = None) -> ItemTables:
        """The item side from the model's own vectors (``text``: fine-tuned text rows)."""
        vectors = self.item_tower() if text is None else self.item_tower(text_vectors=text)
        return self.tables_for(vectors, self.item_tower.text_vectors if text is None else text)

    def tables_for(self, vectors: torch.Tensor, text: torch.Tensor) -> ItemTables:
        """Tables from item-tower ``vectors`` and raw ``text`` vectors (same rows)."""
        scope = self.item_scope if len(self.item_scope) else None
        if self.text_match is None or not self.text_match.active:
            return ItemTables(vectors, vectors, None, scope)
        unit = TextMatch.unit(text)
        return ItemTables(vectors, torch.cat([vectors, unit.to(vectors.dtype)], -1), unit,
                          scope)

    # ------------------------------------------------------------------ user side
    def tower(self, batch: Batch, tables: ItemTables) -> torch.Tensor:
        """The user tower's output ``[T, dim]`` at every example of ``batch``."""
        h = self.user_tower(tables.vectors, batch.items, batch.behaviors, batch.scenarios,
                            batch.gaps)
        return h[batch.rows, batch.cols]

    def encode(self, batch: Batch, tables: ItemTables) -> UserStates:
        """The state of every example of ``batch`` (a user after some of their history),
        with how long after the last input it happens and the scenario it is scored in."""
        h = self.tower(batch, tables)
        gap = batch.target_gap
        if gap is not None and self.training:  # serving may not know the time
            gap = gap * (torch.rand(gap.shape, device=gap.device) >= 0.2)
        recent = recent_items(batch.items, batch.rows, batch.cols, self.match_lags)
        return self.finish_states(h, gap, batch.target_scenario, recent, tables)

    def finish_states(self, h: torch.Tensor, gap: torch.Tensor | None,
                      scenario: torch.Tensor, recent: torch.Tensor,
                      tables: ItemTables) -> UserStates:
        """States from user-tower outputs ``h`` ``[T, dim]``: the gap bucket to the scored
        interaction (None: not known, as when serving: bucket 0), the scenario ``[T]`` and
        the ``recent`` item codes ``[T, lags]`` (most recent first) for the text match."""
        h = h + (self.target_gap(gap) if gap is not None else self.target_gap.weight[0])
        if self.mtl is not None:  # the scenario path of the user state (STAR, PEPNet)
            h = self.mtl.state(h, scenario)
        query = h + self.query_scenario.weight[scenario]  # (a lookup: no module call)
        if tables.unit is not None and self.text_match is not None:  # unit: the match is on
            text = self.text_match.query(tables.unit, recent).to(query.dtype)
            query = torch.cat([query, text], -1)
        return UserStates(h, query, scenario)

    @property
    def match_lags(self) -> int:
        return self.text_match.config.lags if self.text_match is not None else 1

    # ------------------------------------------------------------------ scores
    def catalog_logits(self, states: UserStates, tables: ItemTables) -> torch.Tensor:
        """``[T, N]`` next-item logits of every item ``1..N`` (fp32)."""
        task = self._retrieval()
        logits = task.logits(states.query.float(), tables.retrieval[1:].float())
        if tables.scope is not None:
            logits = logits.masked_fill(out_of_scope(tables.scope[1:], states.scenario),
                                        float("-inf"))
        return logits

    def item_logits(self, states: UserStates, tables: ItemTables,
                    codes: torch.Tensor) -> torch.Tensor:
        """``[T, C]`` next-item logits of item ``codes`` ``[T, C]`` (fp32)."""
        rows = tables.retrieval[codes].float()
        logits = (rows * states.query.float()[:, None, :]).sum(-1)
        return logits / self._retrieval().temperature

    def heads(self, h: torch.Tensor, v: torch.Tensor,
              scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw pointwise head outputs for (state, item vector, scenario) examples."""
        if self.mtl is None:
            return {}
        features = self.mtl(h, v, scenario)
        return {name: task.head(features[name]) for name, task in self.pointwise_tasks().items()}

    def task_scores(self, states: UserStates, tables: ItemTables, codes: torch.Tensor,
                    logits: torch.Tensor | None = None,
                    lse: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Served per-task scores ``[T, C]`` of item ``codes`` ``[T, C]``: the next-item
        softmax probability over the whole catalog, each pointwise task's prediction
        (probability, rating, expected engagement).  ``logits`` (of ``codes``) and ``lse``
        (``[T]``, the softmax log-normalizer) may be given when a retrieval pass already
        has them."""
        out: dict[str, torch.Tensor] = {}
        retrieval = self.retrieval_task
        if retrieval is not None:
            if logits is None:
                logits = self.item_logits(states, tables, codes)
            if lse is None:
                lse = torch.logsumexp(self.catalog_logits(states, tables), -1)
            out[retrieval.name] = (logits - lse[:, None]).exp()
        pointwise = self.pointwise_tasks()
        if pointwise:
            t, c = codes.shape
            heads = self.heads(states.h[:, None].expand(t, c, -1).reshape(t * c, -1),
                               tables.vectors[codes.reshape(-1)],
                               states.scenario[:, None].expand(t, c).reshape(-1))
            for name, task in pointwise.items():
                out[name] = task.predict(heads).float().reshape(t, c)
        return out

    def _retrieval(self) -> RetrievalTask:
        task = self.retrieval_task
        if task is None:
            raise ValueError(f"the model has no retrieval task (tasks: "
                             f"{', '.join(self.task_names)})")
        return task

    # ------------------------------------------------------------------ training
    def forward(self, batch: Batch, tables: ItemTables | None = None) -> ModelOutput:
        """Outputs for ``batch`` (no loss: see :func:`mtrec.train.loss.task_losses`)."""
        if tables is None:
            text = None  # fine-tuned text rows of this step, when the encoder is trained
            if self.text_tuner is not None and self.training:
                text = self.text_tuner.step_rows(self.item_tower.text_vectors, batch.items,
                                                 batch.target)
            tables = self.item_tables(text)
        states = self.encode(batch, tables)
        heads = self.heads(states.h, tables.vectors[batch.target], states.scenario)
        return ModelOutput(query=states.query, item_table=tables.vectors, heads=heads,
                           retrieval_items=tables.retrieval, item_scope=tables.scope,
                           scenario=states.scenario)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters all tasks share (the user tower's last layer), for GradNorm."""
        return list(self.user_tower.encoder.layers[-1].parameters())

    @staticmethod
    def upgrade_state_dict(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights saved before the task registry (``next_item.*``, ``pointwise.NAME.*``)
        under today's keys (``tasks.NAME.*``)."""
        out = {}
        for key, value in weights.items():
            if key.startswith("next_item."):
                key = "tasks." + key
            elif key.startswith("pointwise."):
                key = "tasks." + key[len("pointwise."):]
            out[key] = value
        return out


class TextTuner(nn.Module):
    """Fine-tunes the text encoder (LoRA or full) inside training.

    Each step re-encodes with gradients at most ``limit`` of the batch's items (its targets
    first, then a random share of its history items) and writes their fresh vectors into the
    cache, so the rest of the catalog follows the encoder as it changes; the other items keep
    their cached vectors.  :meth:`refresh_all` re-encodes the whole catalog after training,
    so inference reads the buffer alone.
    """

    def __init__(self, encoder: TextEncoder, texts: list[str], limit: int = 64) -> None:
        super().__init__()
        self.encoder, self.texts, self.limit = encoder, texts, limit

    def train(self, mode: bool = True) -> TextTuner:
        """Training mode without the encoder's dropout: a step's fresh rows go into the
        cache beside rows encoded without it (with it, Scientific's first LoRA epoch reached
        NDCG@10 0.005 against the frozen model's 0.022)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def chosen(self, targets: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """The item codes (> 0, unique) to re-encode: ``targets`` first, then others at
        random, ``limit`` in all."""
        first = targets[targets > 0].unique()
        rest = others[others > 0].unique()
        rest = rest[~torch.isin(rest, first)]
        room = max(0, self.limit - len(first))
        if len(first) > self.limit:
            first = first[torch.randperm(len(first))[: self.limit]]
        return torch.cat([first, rest[torch.randperm(len(rest))[:room]]])

    def refresh(self, cached: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``cached`` with the rows of ``items`` re-encoded (with gradients); the cache
        itself takes their values too."""
        tokens = self.encoder.tokenize([self.texts[i] for i in items.tolist()])
        fresh = self.encoder(tokens["input_ids"], tokens["attention_mask"]).to(cached.dtype)
        has_text = torch.tensor([bool(self.texts[i]) for i in items.tolist()])
        fresh = fresh * has_text.unsqueeze(-1)
        with torch.no_grad():
            cached.index_copy_(0, items, fresh.detach())
        return cached.index_copy(0, items, fresh)

    def step_rows(self, cached: torch.Tensor, items: torch.Tensor, targets: torch.Tensor
                  ) -> torch.Tensor:
        """:meth:`refresh` of the items :meth:`chosen` from a batch."""
        return self.refresh(cached, self.chosen(targets.flatten(), items.flatten()))

    @torch.no_grad()
    def refresh_all(self, cached: torch.Tensor) -> None:
        vectors = self.encoder.encode(self.texts[1:])
        mask = torch.tensor([bool(t) for t in self.texts[1:]]).unsqueeze(-1)
        cached[1:] = torch.from_numpy(vectors) * mask


def build_model(config: ModelConfig, n_items: int, n_scenarios: int,
                text_vectors: torch.Tensor | None, text_tuner: TextTuner | None = None,
                tasks: dict[str, Task] | None = None) -> MultiTaskRecommender:
    """Build towers, multi-task layer and task heads from ``config`` (``tasks``: already
    built, checked and prepared ones, see :func:`mtrec.tasks.build_tasks`)."""
    if config.item.dim % config.user.heads:
        raise ValueError(f"model.user.heads ({config.user.heads}) must divide model.item.dim "
                         f"({config.item.dim})")
    item_tower = build_item_tower(config.item, n_items, n_scenarios, text_vectors)
    user_tower = UserTower(config.user, config.item.dim, n_scenarios)
    if tasks is None:
        tasks = build_tasks(config.tasks, config.task_options, task_dims(config, n_items))
    for task in tasks.values():  # after the towers, before the multi-task layer
        task.build_head()
    pointwise = tuple(n for n, t in tasks.items() if isinstance(t, PointwiseTask))
    mtl = (build_multitask(config.mtl, config.item.dim, n_scenarios, pointwise)
           if pointwise or config.mtl.kind in SCENARIO_KINDS else None)
    has_retrieval = any(isinstance(t, RetrievalTask) for t in tasks.values())
    match = (TextMatch(config.match) if config.match.enabled and has_retrieval
             and item_tower.adapter is not None else None)
    return MultiTaskRecommender(item_tower, user_tower, mtl, tasks, n_scenarios,
                                text_tuner, match)


def task_dims(config: ModelConfig, n_items: int) -> TaskDims:
    return TaskDims(n_items, config.mtl.expert_dim, config.mtl.tower_dim)
