"""Popularity and ItemKNN on planted data with known answers, checked against brute force,
and ranked by ``evaluate_scorer`` exactly as the neural model is ranked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrec.data.interactions import Interactions
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.eval.protocols import MISS, evaluate_scorer
from mtrec.models.baselines import ItemKNN, NotFittedError, Popularity
from mtrec.models.batches import SequenceBatcher


def _interactions(seqs: list[list[int]], parts: list[list[int]]) -> Interactions:
    user = np.concatenate([np.full(len(s), u) for u, s in enumerate(seqs)]).astype(np.int64)
    n = len(user)
    return Interactions(
        user=user, item=np.concatenate(seqs).astype(np.int64),
        behaviors=np.zeros(n, np.int64), scenario=np.ones(n, np.int64),
        rating=np.full(n, np.nan, np.float32), ts=np.full(n, -1, np.int64),
        part=np.concatenate(parts).astype(np.int8),
        offsets=np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64))


def _paired(n_users: int = 60, n_pairs: int = 6, seed: int = 0) -> Interactions:
    """Items come in pairs (2k+1, 2k+2): a user who saw one of a pair sees its partner next.
    Each user: two random pairs in training, then one item of a third pair (valid) and its
    partner (test)."""
    rng = np.random.default_rng(seed)
    seqs, parts = [], []
    for _ in range(n_users):
        pairs = rng.choice(n_pairs, size=3, replace=False)
        seq = [int(2 * p + 1 + j) for p in pairs[:2] for j in (0, 1)]
        first = int(rng.integers(0, 2))
        seq += [int(2 * pairs[2] + 1 + first), int(2 * pairs[2] + 2 - first)]
        seqs.append(seq)
        parts.append([TRAIN] * 4 + [VALID, TEST])
    return _interactions(seqs, parts)


def _brute_knn(data: Interactions, n_items: int, shrink: float) -> np.ndarray:
    train = data.part == TRAIN
    sets = [set(data.user[train & (data.item == i)].tolist()) for i in range(1, n_items + 1)]
    sim = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i != j and sets[i] and sets[j]:
                both = len(sets[i] & sets[j])
                sim[i, j] = both / (np.sqrt(len(sets[i]) * len(sets[j])) + shrink)
    return sim


def test_itemknn_similarity_matches_brute_force() -> None:
    data = _paired()
    knn = ItemKNN(neighbors=1000, shrink=2.0).fit(data, n_items=12)
    np.testing.assert_allclose(knn.similarity_.toarray(), _brute_knn(data, 12, 2.0), rtol=1e-5)


def test_itemknn_keeps_top_neighbors_and_decays_older_items() -> None:
    data = _paired()
    knn = ItemKNN(neighbors=2, shrink=0.0).fit(data, n_items=12)
    assert (np.diff(knn.similarity_.indptr) <= 2).all()
    full = ItemKNN(neighbors=1000, shrink=0.0).fit(data, n_items=12)
    history = [np.array([1, 3])]
    plain = full.score(history)[0].numpy()
    sim = full.similarity_.toarray()
    np.testing.assert_allclose(plain, sim[0] + sim[2], rtol=1e-6)
    decayed = ItemKNN(neighbors=1000, shrink=0.0, decay=0.5).fit(data, 12).score(history)
    np.testing.assert_allclose(decayed[0].numpy(), 0.5 * sim[0] + sim[2], rtol=1e-6)


def test_itemknn_finds_the_planted_partner_and_popularity_does_not() -> None:
    data = _paired(n_users=200)
    batcher = SequenceBatcher(data, max_len=50, labels={})
    knn = ItemKNN(neighbors=20, shrink=1.0).fit(data, n_items=12)
    metrics = evaluate_scorer(knn.score, batcher, TEST, n_items=12)
    assert metrics["next_item/mrr@5"] == 1.0  # rank 1: the partner of the valid item
    pop = evaluate_scorer(Popularity().fit(data, 12).score, batcher, TEST, n_items=12)
    assert pop["next_item/mrr@5"] < 0.5
    assert metrics["next_item/users"] == 200


def test_popularity_counts_training_part_only() -> None:
    data = _interactions([[1, 2, 2], [3, 3, 3]], [[TRAIN, TRAIN, TRAIN], [TRAIN, VALID, TEST]])
    pop = Popularity().fit(data, n_items=3)
    assert pop.counts_.tolist() == [1.0, 2.0, 1.0]
    assert pop.score([np.array([1]), np.array([2])]).shape == (2, 3)


def test_evaluate_scorer_masks_history_like_the_model() -> None:
    # user 0: train 1, 2; test 2 (a repeat: masked, a miss). user 1: train 1; test 3.
    data = _interactions([[1, 2, 2], [1, 3]], [[TRAIN, TRAIN, TEST], [TRAIN, TEST]])
    batcher = SequenceBatcher(data, max_len=50, labels={})
    users, histories, targets, _ = batcher.next_item_queries(TEST)
    assert users.tolist() == [0, 1] and targets.tolist() == [2, 3]
    assert [h.tolist() for h in histories] == [[1, 2], [1]]

    def oracle(hist: list[np.ndarray]) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])[:len(hist)]

    metrics = evaluate_scorer(oracle, batcher, TEST, n_items=3)
    assert metrics["next_item/mrr@5"] == 0.5  # user 0's target is masked: rank MISS
    assert MISS > 1000


def test_unfitted_and_bad_parameters() -> None:
    with pytest.raises(NotFittedError, match="before fit"):
        ItemKNN().score([np.array([1])])
    with pytest.raises(NotFittedError, match="before fit"):
        Popularity().score([np.array([1])])
    with pytest.raises(ValueError, match="decay"):
        ItemKNN(decay=0.0).fit(_paired(), 12)
