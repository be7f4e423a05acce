"""``diversity``: maximal marginal relevance (Carbonell & Goldstein, 1998) over item vectors.

The top ``k`` are picked one at a time: each pick maximises
``(1 - weight) * relevance - weight * max cosine to the items already picked``, where
relevance is the candidate's ranking score rescaled to [0, 1] over the candidates and the
cosine is between item-tower vectors.  ``weight`` 0 keeps the blended order; the rest of
the candidates follow the picks in their previous order.  Put it after ``blend``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.rank.base import Candidates, RankContext, RankRequest, read_options


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Indices of the ``k`` MMR picks, in pick order (``vectors`` unit rows).

    >>> v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> mmr_order(np.array([1.0, 0.9, 0.5]), v, 2, 0.0).tolist()
    [0, 1]
    >>> mmr_order(np.array([1.0, 0.9, 0.5]), v, 2, 0.5).tolist()  # the copy of 0 waits
    [0, 2]
    """
    k = min(k, len(relevance))
    picked: list[int] = []
    closest = np.full(len(relevance), -np.inf)  # max cosine to the picks so far
    free = np.ones(len(relevance), dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        gain = np.where(free, (1.0 - weight) * relevance - weight * penalty, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        free[best] = False
        closest = np.maximum(closest, vectors @ vectors[best])
    return np.asarray(picked, dtype=np.int64)


class Diversity:
    name: ClassVar[str] = "diversity"

    def __init__(self, options: Mapping[str, float]) -> None:
        self.options = read_options(self.name, options, {"weight": 0.3})
        if not 0.0 <= self.options["weight"] <= 1.0:
            raise ValueError(f"rank option diversity.weight must be in [0, 1], got "
                             f"{self.options['weight']}")

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates:
        if len(candidates) <= 1 or self.options["weight"] == 0.0:
            return candidates
        total = np.asarray(candidates.total, dtype=np.float64)
        span = total.max() - total.min()
        relevance = (total - total.min()) / span if span > 0 else np.ones(len(total))
        vectors = F.normalize(context.vectors[torch.from_numpy(candidates.codes)].float(),
                              dim=-1, eps=1e-8).numpy()
        picks = mmr_order(relevance, vectors, request.k, self.options["weight"])
        rest = np.setdiff1d(np.arange(len(candidates)), picks, assume_unique=True)
        return candidates.take(np.concatenate([picks, rest]))
