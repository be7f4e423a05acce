"""The candidates a policy re-orders: retrieved by a bundle's model, with their features.

One feature function (:func:`candidate_features`) serves both the simulator's episodes
(:func:`candidate_pool`, candidates retrieved from each user's history before the cut) and
the ``policy`` ranking stage online, so the policy sees the same inputs in both places.
"""

from __future__ import annotations

import numpy as np
import torch

from mtrec.policy.engagement import cut_batch
from mtrec.policy.env import Pool
from mtrec.policy.features import FEATURES, candidate_features, check_tasks
from mtrec.recommender import Recommender


def popularity_before(rec: Recommender, cut: int) -> np.ndarray:
    """Interactions per item code in the bundle before ``cut``."""
    d = rec.batcher.data
    keep = (d.ts >= 0) & (d.ts < cut)
    return np.bincount(d.item[keep], minlength=rec.catalog.n_items + 1).astype(np.float64)


@torch.no_grad()
def candidate_pool(rec: Recommender, users: np.ndarray, cut: int, size: int,
                   popularity: np.ndarray, batch: int = 256) -> Pool:
    """Each user's ``size`` best candidates retrieved from their history before ``cut``
    (read at the cut; items they had taken excluded), padded with code 0 where fewer
    exist; ``batch`` users per pass over the catalog."""
    check_tasks(rec.tasks)
    model, tables, data = rec.model, rec.tables, rec.batcher.data
    users = np.asarray(users, np.int64)
    codes = np.zeros((len(users), size), np.int64)
    feats = np.zeros((len(users), size, len(FEATURES)), np.float32)
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        states = model.encode(cut_batch(data, chunk, np.full(len(chunk), cut),
                                        model.user_tower.config.max_len), tables)
        logits = model.catalog_logits(states, tables)  # [B, N] of items 1..N
        lse = torch.logsumexp(logits, 1)
        for row, u in enumerate(chunk.tolist()):
            rows = np.arange(data.offsets[u], data.offsets[u + 1])
            seen = data.item[rows[(data.ts[rows] >= 0) & (data.ts[rows] < cut)]]
            logits[row, torch.from_numpy(np.unique(seen) - 1)] = float("-inf")
        top = torch.topk(logits, min(size, logits.shape[1]), 1)
        found = top.indices + 1
        scores = model.task_scores(states, tables, found, top.values, lse)
        for row in range(len(chunk)):
            ok = torch.isfinite(top.values[row]).numpy()
            c = found[row].numpy()[ok]
            n = len(c)
            codes[start + row, :n] = c
            feats[start + row, :n] = candidate_features(
                {t: v[row].numpy()[ok] for t, v in scores.items()}, popularity, c)
    return Pool(users, codes, feats, FEATURES)
