"""Batches read off interaction sequences: training, next-item evaluation, rolling windows."""

from __future__ import annotations

import numpy as np

from mtrec.data.interactions import Interactions
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.models.batches import SequenceBatcher, gap_bucket


def _one_user(parts: list[int], ts: list[int] | None = None) -> Interactions:
    n = len(parts)
    return Interactions(
        user=np.zeros(n, np.int64), item=np.arange(1, n + 1, dtype=np.int64),
        behaviors=np.zeros(n, np.int64), scenario=np.ones(n, np.int64),
        rating=np.full(n, np.nan, np.float32),
        ts=np.array(ts if ts is not None else [-1] * n, np.int64),
        part=np.array(parts, np.int8), offsets=np.array([0, n], np.int64))


def test_rolling_windows_score_each_part_interaction_once_with_its_own_past() -> None:
    data = _one_user([TRAIN] * 3 + [TEST] * 5)  # items 1..3 train, 4..8 test
    batcher = SequenceBatcher(data, max_len=4, labels={})
    batch, owners = batcher.rolling_batch([0], TEST)
    assert sorted(batch.target.tolist()) == [4, 5, 6, 7, 8]
    assert not batch.next_item.any() and owners.tolist() == [0] * batch.items.shape[0]
    for row, col, target in zip(batch.rows.tolist(), batch.cols.tolist(),
                                batch.target.tolist(), strict=True):
        seen = [i for i in batch.items[row, 1:col + 1].tolist()]
        # the inputs are the items just before the target, in order, within max_len
        assert seen == list(range(max(1, target - col), target))
        assert col < 4


def test_eval_batch_uses_earlier_parts_only() -> None:
    data = _one_user([TRAIN, TRAIN, VALID, TEST])
    batcher = SequenceBatcher(data, max_len=10, labels={})
    batch, history = batcher.eval_batch([0], TEST)
    assert batch.items[0].tolist() == [-1, 1, 2, 3]
    assert batch.target.tolist() == [4] and history[0].tolist() == [1, 2, 3]
    batch, history = batcher.eval_batch([0], VALID)
    assert batch.items[0].tolist() == [-1, 1, 2] and batch.target.tolist() == [3]


def test_training_gaps_follow_timestamps() -> None:
    day = 86_400
    data = _one_user([TRAIN] * 3, ts=[0, 60, 60 + day])
    batch = SequenceBatcher(data, max_len=10, labels={}).train_batch([0])
    assert batch.gaps is not None and batch.target_gap is not None
    assert batch.gaps[0].tolist() == [0, 0, 2]  # begin, first (no previous), one minute
    assert batch.target_gap.tolist() == [0, 2, int(gap_bucket(np.array([day]),
                                                              np.array([0]))[0])]
