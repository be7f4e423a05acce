"""Turn interactions into model batches: causal training sequences and evaluation queries.

Training: for each user, the training interactions in order (the last ``max_len``); input
position 0 is the begin token and position ``t`` predicts interaction ``t``, so every
training interaction is an example.  Evaluation on part P: the input is the user's
interactions of earlier parts (train, then valid for test) and every part-P interaction is
scored from the state after that history; the first one is the next-item target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtrec.data.interactions import Interactions
from mtrec.data.split import TRAIN
from mtrec.models.model import Batch
from mtrec.models.user_tower import GAP_BUCKETS
from mtrec.tasks.base import Labels

# One training sequence (interaction indices) -> inputs and (targets, columns they are read at)
Augment = Callable[[np.ndarray], tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]


def _grouped(data: Interactions, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the masked interactions (kept in user order) and per-user offsets."""
    idx = np.flatnonzero(mask)
    counts = np.bincount(data.user[idx], minlength=len(data.offsets) - 1)
    return idx, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def gap_bucket(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """Time gaps as buckets: 0 = unknown, then ``1 + log2(1 + minutes)`` capped.

    >>> gap_bucket(np.array([100, 100 + 3600, 5, -1]), np.array([100, 100, -1, 3])).tolist()
    [1, 6, 0, 0]
    """
    known = (later >= 0) & (earlier >= 0) & (later >= earlier)
    minutes = np.where(known, later - earlier, 0) / 60.0
    bucket = 1 + np.floor(np.log2(1.0 + minutes)).astype(np.int64)
    return np.where(known, np.minimum(bucket, GAP_BUCKETS - 1), 0)


@dataclass(frozen=True)
class InputGrid:
    """Input sequences as ``[B, L]`` arrays: position 0 is the begin token (item -1), then
    each sequence's interactions; padding is 0 (ts -1)."""

    items: np.ndarray
    behaviors: np.ndarray
    scenarios: np.ndarray
    ts: np.ndarray
    gaps: np.ndarray  # time-gap bucket of each input to the one before it


def input_grid(data: Interactions, inputs: Sequence[np.ndarray]) -> InputGrid:
    """The grid of ``inputs`` (per row, interaction indices in order)."""
    n, length = len(inputs), max(len(s) for s in inputs) + 1
    items, behaviors, scenarios = (np.zeros((n, length), np.int64) for _ in range(3))
    ts = np.full((n, length), -1, np.int64)
    items[:, 0] = -1
    for b, s in enumerate(inputs):
        items[b, 1:len(s) + 1] = data.item[s]
        behaviors[b, 1:len(s) + 1] = data.behaviors[s]
        scenarios[b, 1:len(s) + 1] = data.scenario[s]
        ts[b, 1:len(s) + 1] = data.ts[s]
    gaps = np.zeros((n, length), np.int64)
    gaps[:, 1:] = gap_bucket(ts[:, 1:], ts[:, :-1])
    return InputGrid(items, behaviors, scenarios, ts, gaps)


def first_per_scenario(scenario: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The first of ``rows`` (interaction indices, in order) in each scenario they touch,
    in order: a held-out part's next-item targets (one per scenario of a user).

    >>> first_per_scenario(np.array([1, 2, 1, 2, 1]), np.array([2, 3, 4])).tolist()
    [2, 3]
    """
    _, first = np.unique(scenario[rows], return_index=True)
    return rows[np.sort(first)]


class SequenceBatcher:
    def __init__(self, data: Interactions, max_len: int, labels: dict[str, Labels],
                 train_parts: tuple[int, ...] = (TRAIN,),
                 exclude: np.ndarray | None = None, per_scenario: bool = False,
                 reorder: np.ndarray | None = None) -> None:
        """``exclude``: per user code, users left out of training (still histories).
        ``per_scenario``: a held-out part has one next-item target per user and scenario
        (a multi-scenario catalog, each scenario ranked apart), else one per user.
        ``reorder``: per user code, whether each of its training sequences is a fresh random
        order of its training interactions (data without an order; drawn from
        :meth:`reseed`'s generator)."""
        self.data, self.max_len, self.labels = data, max_len, labels
        self.exclude, self.per_scenario, self.reorder = exclude, per_scenario, reorder
        self._rng = np.random.default_rng(0)
        self._train = _grouped(data, np.isin(data.part, train_parts))
        self._history: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def train_users(self) -> np.ndarray:
        has = np.diff(self._train[1]) > 0
        return np.flatnonzero(has if self.exclude is None else has & ~self.exclude)

    def train_lengths(self) -> np.ndarray:
        """Input length per user code (for length-bucketed batches)."""
        return np.minimum(np.diff(self._train[1]), self.max_len)

    def eval_users(self, part: int) -> np.ndarray:
        return np.flatnonzero(np.diff(self._part_targets(part)[1]) > 0)

    def history(self, part: int) -> tuple[np.ndarray, np.ndarray]:
        """Interactions visible before ``part`` (grouped per user)."""
        if part not in self._history:
            self._history[part] = _grouped(self.data, self.data.part < part)
        return self._history[part]

    def _part_targets(self, part: int) -> tuple[np.ndarray, np.ndarray]:
        if part not in self._targets:
            self._targets[part] = _grouped(self.data, self.data.part == part)
        return self._targets[part]

    def train_batch(self, users: Sequence[int] | np.ndarray,
                    augment: Augment | None = None) -> Batch:
        idx, off = self._train
        seqs = [self._ordered(idx[off[u]:off[u + 1]], u)[-self.max_len:] for u in users]
        if augment is not None:
            pairs = [augment(s) for s in seqs]
            return self._batch([a for a, _ in pairs], [t for _, t in pairs], "all")
        inputs = [s[:-1] for s in seqs]
        targets = [(s, np.arange(len(s))) for s in seqs]
        return self._batch(inputs, targets, "all")

    def reseed(self, seed: int | tuple[int, ...]) -> None:
        """The generator of :attr:`reorder`'s orders (the same draws after a resume)."""
        self._rng = np.random.default_rng(seed)

    def _ordered(self, rows: np.ndarray, user: int) -> np.ndarray:
        shuffle = self.reorder is not None and self.reorder[user]
        return self._rng.permutation(rows) if shuffle else rows

    def eval_batch(self, users: Sequence[int] | np.ndarray,
                   part: int) -> tuple[Batch, list[np.ndarray]]:
        """The batch and, per user, the item codes to mask (the whole visible history)."""
        h_idx, h_off = self.history(part)
        t_idx, t_off = self._part_targets(part)
        full = [h_idx[h_off[u]:h_off[u + 1]] for u in users]
        inputs = [h[-(self.max_len - 1):] for h in full]
        targets = []
        for u, h in zip(users, inputs, strict=True):
            rows = t_idx[t_off[u]:t_off[u + 1]]
            targets.append((rows, np.full(len(rows), len(h))))
        return self._batch(inputs, targets, "first"), [self.data.item[h] for h in full]

    def next_item_queries(self, part: int
                          ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
        """What every model, neural or not, is ranked on: one query per user with a
        ``part`` target (per user and scenario with ``per_scenario``), each with the user's
        whole visible history (item codes, the mask), the next-item target (the first
        ``part`` interaction, in that scenario) and its scenario.  Users are repeated where
        they have targets in several scenarios."""
        users = self.eval_users(part)
        h_idx, h_off = self.history(part)
        t_idx, t_off = self._part_targets(part)
        owners, histories, rows = [], [], []
        for u in users:
            history = self.data.item[h_idx[h_off[u]:h_off[u + 1]]]
            for row in self._firsts(t_idx[t_off[u]:t_off[u + 1]]):
                owners.append(u)
                histories.append(history)
                rows.append(row)
        picked = np.asarray(rows, dtype=np.int64)
        return (np.asarray(owners, dtype=np.int64), histories, self.data.item[picked],
                self.data.scenario[picked])

    def rolling_batch(self, users: Sequence[int] | np.ndarray,
                      part: int) -> tuple[Batch, np.ndarray]:
        """Every part-``part`` interaction scored causally, as in training: from the state
        after the user's earlier parts *and* the earlier interactions of this part (inputs
        are observed behaviour, not labels).  Long parts are cut into windows of
        ``max_len``.  Returns the batch and the user of each row.  For pointwise tasks."""
        h_idx, h_off = self.history(part)
        t_idx, t_off = self._part_targets(part)
        inputs, targets, owners = [], [], []
        for u in users:
            first = h_off[u + 1] - h_off[u]
            seq = np.concatenate([h_idx[h_off[u]:h_off[u + 1]], t_idx[t_off[u]:t_off[u + 1]]])
            end = len(seq) - 1
            while end >= first:
                start = max(0, end - self.max_len + 1)
                block = seq[start:end + 1]
                cols = np.arange(max(first, start), end + 1) - start
                inputs.append(block[:-1])
                targets.append((block[cols], cols))
                owners.append(u)
                end = start - 1
        return self._batch(inputs, targets, "none"), np.asarray(owners, dtype=np.int64)

    def _firsts(self, rows: np.ndarray) -> np.ndarray:
        """A held-out part's next-item targets among a user's ``rows``."""
        return first_per_scenario(self.data.scenario, rows) if self.per_scenario else rows[:1]

    def _batch(self, inputs: list[np.ndarray], targets: list[tuple[np.ndarray, np.ndarray]],
               next_item: str) -> Batch:
        """``next_item``: which examples are next-item targets: "all", "first" per row and
        scenario (a held-out part), "none"."""
        d = self.data
        grid = input_grid(d, inputs)
        in_ts = grid.ts
        rows = np.concatenate([np.full(len(t), b) for b, (t, _) in enumerate(targets)])
        cols = np.concatenate([c for _, c in targets])
        tgt = np.concatenate([t for t, _ in targets]).astype(np.int64)
        first = np.concatenate([np.ones(len(t), bool) if next_item == "all"
                                else np.isin(t, self._firsts(t)) & (next_item == "first")
                                for t, _ in targets])
        as_t = torch.from_numpy
        return Batch(
            items=as_t(grid.items), behaviors=as_t(grid.behaviors),
            scenarios=as_t(grid.scenarios),
            rows=as_t(rows.astype(np.int64)), cols=as_t(cols.astype(np.int64)),
            target=as_t(d.item[tgt]), target_scenario=as_t(d.scenario[tgt]),
            next_item=as_t(first), gaps=as_t(grid.gaps),
            target_gap=as_t(gap_bucket(d.ts[tgt], in_ts[rows, cols])),
            labels={k: as_t(v.values[tgt]) for k, v in self.labels.items()},
            label_mask={k: as_t(v.mask[tgt]) for k, v in self.labels.items()},
        )


def history_batch(steps: Sequence[tuple[int, int, int, int]], scenario: int,
                  max_len: int) -> Batch:
    """One example: the state after ``steps`` (``(item code, behaviour bits, scenario,
    ts)``, oldest first; the last ``max_len - 1`` are read), scored in ``scenario`` at an
    unknown time.  The same inputs :meth:`SequenceBatcher.eval_batch` builds for a user
    whose visible history is ``steps``."""
    recent = list(steps)[-(max_len - 1):]
    n = len(recent) + 1
    rows = np.array([(-1, 0, 0, -1), *recent], dtype=np.int64).reshape(n, 4)
    gaps = np.zeros((1, n), dtype=np.int64)
    gaps[0, 1:] = gap_bucket(rows[1:, 3], rows[:-1, 3])
    as_t = torch.from_numpy
    return Batch(items=as_t(rows[None, :, 0].copy()), behaviors=as_t(rows[None, :, 1].copy()),
                 scenarios=as_t(rows[None, :, 2].copy()), rows=torch.zeros(1, dtype=torch.long),
                 cols=torch.tensor([n - 1]), target=torch.zeros(1, dtype=torch.long),
                 target_scenario=torch.tensor([scenario]),
                 next_item=torch.zeros(1, dtype=torch.bool), gaps=as_t(gaps))


def recent_codes(steps: Sequence[tuple[int, ...]], lags: int) -> torch.Tensor:
    """``[1, lags]`` item codes of the latest ``steps``, most recent first, -1 padded.

    >>> recent_codes([(5, 1, 1, -1), (6, 1, 1, -1)], 3).tolist()
    [[6, 5, -1]]
    """
    codes = [s[0] for s in reversed(list(steps)[-lags:])]
    return torch.tensor([codes + [-1] * (lags - len(codes))], dtype=torch.long)
