"""``evaluate`` on hand-built cases whose metrics are known, and on synthetic protocols.

The hand-built case uses a planted model: every user scores item ``i`` as ``-i`` (item 1
first), so each target's rank follows from the user's visible history by hand.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from torch import nn

from mtrec.data.interactions import Interactions
from mtrec.data.schema import BEHAVIORS
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.eval.metrics import auc
from mtrec.eval.protocols import COLD_MAX, evaluate, item_train_counts, lower_is_better
from mtrec.models.batches import SequenceBatcher
from mtrec.models.model import Batch, ItemTables, MultiTaskRecommender, UserStates
from mtrec.run_config import load_run_config
from mtrec.tasks.base import PointwiseTask, TaskDims, TaskOptions
from mtrec.tasks.binary import ClickTask
from mtrec.tasks.next_item import NextItemTask
from mtrec.train.run import build, prepare_run
from tests.planted import planted, tiny, write_store

N_ITEMS = 6
VIEW, CLICK = 1 << BEHAVIORS.index("view"), 1 << BEHAVIORS.index("click")
T, V, X = TRAIN, VALID, TEST

# Per user, interactions in order: (item, part, clicked).
SEQUENCES: list[list[tuple[int, int, bool]]] = [
    [(1, T, False), (2, T, False), (4, V, False), (4, X, False)],  # target 4 already seen
    [(1, T, False), (2, T, False)],
    [(1, T, False), (2, T, False)],
    [(1, T, False), (2, T, False)],
    [(1, T, False), (2, T, False)],
    [(1, T, False), (2, X, True)],  # target 2: item 1 is masked, so rank 0
    [(3, T, False), (1, X, True)],  # target 1: the best item, rank 0
    [(4, T, False), (5, T, False), (3, V, False), (6, X, True), (2, X, False)],  # rank 2
]
MISSED = 10**9  # the rank of a target that is masked (already in the history)
# Training interactions per item: item 1 six (warm), item 2 five (cold: <= COLD_MAX).
TRAIN_COUNTS = [0, 6, 5, 1, 1, 1, 0]


def _interactions() -> Interactions:
    user, item, part, bits = [], [], [], []
    for u, seq in enumerate(SEQUENCES):
        for i, p, clicked in seq:
            user.append(u)
            item.append(i)
            part.append(p)
            bits.append(VIEW | (CLICK if clicked else 0))
    m = len(user)
    counts = np.bincount(user, minlength=len(SEQUENCES))
    return Interactions(
        user=np.array(user, np.int64), item=np.array(item, np.int64),
        behaviors=np.array(bits, np.int64), scenario=np.ones(m, np.int64),
        rating=np.full(m, np.nan, np.float32), ts=np.arange(m, dtype=np.int64),
        part=np.array(part, np.int8),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


class PlantedModel(nn.Module):
    """Duck-types :class:`MultiTaskRecommender`'s scoring API: item ``i`` scores ``-i`` for
    everyone."""

    def __init__(self, pointwise: dict[str, PointwiseTask]) -> None:
        super().__init__()
        self.retrieval_task = NextItemTask(TaskOptions(), TaskDims(N_ITEMS, 4, 4))
        self.pointwise = nn.ModuleDict(pointwise)
        self.batches: list[Batch] = []
        self.score = -torch.arange(N_ITEMS + 1, dtype=torch.float32)

    def item_tables(self) -> ItemTables:
        eye = torch.eye(N_ITEMS + 1)  # one-hot item vectors: query @ item = query[item]
        return ItemTables(eye, eye, None)

    def pointwise_tasks(self) -> dict[str, PointwiseTask]:
        return {k: cast(PointwiseTask, v) for k, v in self.pointwise.items()}

    def encode(self, batch: Batch, tables: ItemTables) -> UserStates:
        self.batches.append(batch)
        query = self.score.expand(len(batch.target), -1)
        return UserStates(query, query, batch.target_scenario)

    def catalog_logits(self, states: UserStates, tables: ItemTables) -> torch.Tensor:
        return self.retrieval_task.logits(states.query, tables.retrieval[1:])

    def heads(self, h: torch.Tensor, v: torch.Tensor,
              scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: (v @ self.score).unsqueeze(1) for name in self.pointwise}


def _ndcg(ranks: list[int], k: int) -> float:
    return float(np.mean([1 / math.log2(r + 2) if r < k else 0.0 for r in ranks]))


def _mrr(ranks: list[int], k: int) -> float:
    return float(np.mean([1 / (r + 1) if r < k else 0.0 for r in ranks]))


@pytest.fixture()
def case() -> tuple[PlantedModel, SequenceBatcher]:
    data = _interactions()
    click = ClickTask(TaskOptions(), TaskDims(N_ITEMS, 4, 4))
    batcher = SequenceBatcher(data, max_len=10, labels={"click": click.labels(data)})
    return PlantedModel({"click": click}), batcher


def test_item_train_counts(case: tuple[PlantedModel, SequenceBatcher]) -> None:
    _, batcher = case
    assert item_train_counts(batcher, N_ITEMS).tolist() == TRAIN_COUNTS


def test_history_is_masked_and_ranks_are_known(
        case: tuple[PlantedModel, SequenceBatcher]) -> None:
    model, batcher = case
    metrics = evaluate(cast(MultiTaskRecommender, model), batcher, TEST)
    # Users 0, 5, 6, 7 have test interactions; user 0's target (4) is in its history.
    ranks = [MISSED, 0, 0, 2]
    assert metrics["next_item/users"] == 4
    for k in (5, 10, 20):  # a masked target is a miss even at k > N_ITEMS
        assert metrics[f"next_item/recall@{k}"] == pytest.approx(0.75)
        assert metrics[f"next_item/hr@{k}"] == pytest.approx(0.75)
        assert metrics[f"next_item/ndcg@{k}"] == pytest.approx(_ndcg(ranks, k))
        assert metrics[f"next_item/mrr@{k}"] == pytest.approx(_mrr(ranks, k))
    assert metrics["next_item/ndcg@5"] == pytest.approx((1 + 1 + 0.5) / 4)
    # Unmasked, user 5 would rank item 1 first and user 7 would rank five items first.
    assert metrics["next_item/mrr@5"] == pytest.approx((1 + 1 + 1 / 3) / 4)


def test_cold_subset_is_targets_with_few_training_interactions(
        case: tuple[PlantedModel, SequenceBatcher]) -> None:
    model, batcher = case
    metrics = evaluate(cast(MultiTaskRecommender, model), batcher, TEST)
    assert COLD_MAX == 5
    # Targets 4 (1 training interaction), 2 (5: cold at the bound), 1 (6: warm), 6 (0).
    assert metrics["next_item/cold_share"] == pytest.approx(3 / 4)
    cold_ranks = [MISSED, 0, 2]
    assert metrics["next_item/cold_ndcg@5"] == pytest.approx(_ndcg(cold_ranks, 5))
    assert metrics["next_item/cold_recall@5"] == pytest.approx(2 / 3)
    assert metrics["next_item/cold_recall@20"] == pytest.approx(2 / 3)
    strict = evaluate(cast(MultiTaskRecommender, model), batcher, TEST, cold_max=4)
    assert strict["next_item/cold_share"] == pytest.approx(2 / 4)  # item 2 is warm now
    assert strict["next_item/cold_ndcg@5"] == pytest.approx(_ndcg([MISSED, 2], 5))
    none_cold = evaluate(cast(MultiTaskRecommender, model), batcher, TEST, cold_max=-1)
    assert none_cold["next_item/cold_share"] == 0.0
    assert not any(k.startswith("next_item/cold_ndcg") for k in none_cold)


def test_inputs_are_the_visible_history(case: tuple[PlantedModel, SequenceBatcher]) -> None:
    model, batcher = case
    evaluate(cast(MultiTaskRecommender, model), batcher, TEST, batch_size=2)
    ranked = [b for b in model.batches if b.next_item.any()]  # not the pointwise batches
    assert len(ranked) == 2  # four test users, two per batch
    last = ranked[-1]  # users 6 and 7
    assert last.items[1].tolist() == [-1, 4, 5, 3]  # begin token, train then valid items
    assert last.items[0].tolist() == [-1, 3, 0, 0]  # right-padded
    assert last.target.tolist() == [1, 6, 2]
    assert last.rows.tolist() == [0, 1, 1]
    assert last.cols.tolist() == [1, 3, 3]  # the state after each user's whole history
    assert last.next_item.tolist() == [True, True, False]  # only the first is a target


def test_pointwise_tasks_score_every_part_interaction(
        case: tuple[PlantedModel, SequenceBatcher]) -> None:
    model, batcher = case
    metrics = evaluate(cast(MultiTaskRecommender, model), batcher, TEST)
    # Test interactions: (item, clicked) = (4, no) (2, yes) (1, yes) (6, yes) (2, no).
    labels = np.array([0, 1, 1, 1, 0])
    scores = -np.array([4, 2, 1, 6, 2], dtype=float)
    assert metrics["click/examples"] == 5
    assert metrics["click/auc"] == pytest.approx(auc(labels, scores))
    assert metrics["click/auc"] == pytest.approx(3.5 / 6)
    assert metrics["click/gauc"] == 0.0  # only user 7 has both: clicked 6 scores below 2
    valid = evaluate(cast(MultiTaskRecommender, model), batcher, VALID)
    assert valid["click/examples"] == 2  # users 0 and 7
    assert valid["next_item/users"] == 2


def test_model_mode_is_restored(case: tuple[PlantedModel, SequenceBatcher]) -> None:
    model, batcher = case
    model.train()
    evaluate(cast(MultiTaskRecommender, model), batcher, TEST)
    assert model.training
    model.eval()
    evaluate(cast(MultiTaskRecommender, model), batcher, TEST)
    assert not model.training


@pytest.mark.parametrize("name,lower", [
    ("rating/rmse", True), ("rating/mae", True), ("click/logloss", True),
    ("engagement/log_count_rmse", True), ("engagement/log_count_mae", True),
    ("engagement/return_logloss", True), ("train/loss", True),
    ("next_item/ndcg@10", False), ("next_item/cold_recall@20", False),
    ("click/auc", False), ("click/gauc", False), ("engagement/return_auc", False),
    ("next_item/mrr@5", False),
])
def test_lower_is_better(name: str, lower: bool) -> None:
    assert lower_is_better(name) is lower


def test_cold_item_protocol_makes_every_target_cold(tmp_path: Path) -> None:
    """Under ``cold-item`` no held-out item has a training interaction: all targets are cold."""
    store = write_store(planted(n_users=60, n_items=40), tmp_path)
    config = load_run_config(None, **tiny(store, **{"data.protocol": "cold-item",
                                                    "model.tasks": ["next_item", "click"]}))
    prepared = prepare_run(config, store_dir=tmp_path)
    model, batcher = build(config, prepared, None)
    d = prepared.interactions
    counts = item_train_counts(batcher, prepared.catalog.n_items)
    held_out = np.unique(d.item[d.part == TEST])
    assert len(held_out) == 4  # 10 % of 40 items
    assert counts[held_out].sum() == 0
    assert counts.sum() == (d.part == TRAIN).sum()
    torch.manual_seed(0)
    metrics = evaluate(model, batcher, TEST)
    assert metrics["next_item/cold_share"] == 1.0
    assert metrics["next_item/users"] == len(np.unique(d.user[d.part == TEST]))
    for k in (5, 10, 20):
        assert metrics[f"next_item/cold_ndcg@{k}"] == metrics[f"next_item/ndcg@{k}"]
    assert metrics["click/examples"] == (d.part == TEST).sum()


def test_masked_ranks_takes_any_layout_and_names_a_bad_history_code() -> None:
    """Regression (review): the vectorised mask viewed ``zeros_like(scores)`` flat, which
    fails on transposed scores, and a history code out of range masked another row's item."""
    from mtrec.eval.protocols import masked_ranks

    scores = torch.tensor([[0.1, 0.2], [0.9, 0.8], [0.5, 0.4]]).T  # [2 users, 3 items], strided
    ranks = masked_ranks(scores, torch.tensor([2, 2]), [np.array([2]), np.array([], np.int64)])
    assert ranks.tolist() == [0, 1]  # user 0: 0.5, its 0.9 masked; user 1: 0.4 behind 0.8
    with pytest.raises(ValueError, match=r"history item codes must lie in \[1, 3\]"):
        masked_ranks(scores, torch.tensor([0, 2]), [np.array([4]), np.array([1])])
