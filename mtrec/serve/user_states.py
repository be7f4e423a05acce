"""The user tower's output after each bundle user's history, computed once in batches.

This is what an offline job would precompute for a live service: a known user's request
then costs a row lookup instead of a transformer pass.  A row is used only while it is
still what a fresh pass would give: a user with events posted since the bundle is computed
per request (their sequence changed), and re-describing an item marks every user who has
it in their history stale (the item's vector, an input of the tower, changed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtrec.models.batches import SequenceBatcher
from mtrec.models.model import MultiTaskRecommender

HISTORY_PART = 3  # every split part is history when serving


class UserStates:
    def __init__(self, rows: torch.Tensor, user: np.ndarray, item: np.ndarray) -> None:
        self.rows = rows  # [users, dim]
        self._user, self._item = user, item  # the bundle's interactions
        self.stale = np.zeros(len(rows), dtype=bool)

    @classmethod
    @torch.no_grad()
    def compute(cls, model: MultiTaskRecommender, batcher: SequenceBatcher,
                table: torch.Tensor, n_users: int, batch_size: int = 512) -> UserStates:
        """Rows for users ``0..n_users-1``, ``batch_size`` users per tower pass."""
        parts = []
        for start in range(0, n_users, batch_size):
            users = np.arange(start, min(start + batch_size, n_users))
            batch, _ = batcher.eval_batch(users, HISTORY_PART)
            h = model.user_tower(table, batch.items, batch.behaviors, batch.scenarios,
                                 batch.gaps)
            last = (batch.items != 0).sum(1) - 1  # the state after the whole history
            parts.append(h[torch.arange(len(last)), last])
        dim = model.user_tower.position.weight.shape[1]
        rows = torch.cat(parts) if parts else torch.zeros(0, dim)
        data = batcher.data
        return cls(rows, data.user, data.item)

    def get(self, user: int) -> torch.Tensor | None:
        """User code ``user``'s row, or None when it is stale."""
        return None if self.stale[user] else self.rows[user]

    def items_changed(self, codes: Sequence[int]) -> int:
        """Mark stale every user whose history holds one of ``codes``; returns how many
        users that newly made stale."""
        if not len(codes):
            return 0
        hit = np.unique(self._user[np.isin(self._item, np.asarray(codes, dtype=np.int64))])
        before = int(self.stale.sum())
        self.stale[hit] = True
        return int(self.stale.sum()) - before
