"""One ranking pipeline, offline and online: a user's state and retrieval pool in, the top
``k`` out.

Callers (the ``Recommender``, the service's engine) encode the user and retrieve a
:class:`Pool` their own way (exact over the bundle's tables, or a half-precision pass / an
ANN index over the live catalog); from there the path is shared: the model's
``task_scores`` for the pool, then the configured stages, then the first ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from mtrec.models.fast_ops import out_of_scope
from mtrec.models.model import ItemTables, MultiTaskRecommender, UserStates
from mtrec.rank import build_stages
from mtrec.rank.base import Candidates, RankContext, RankRequest, Stage, Step
from mtrec.rank.config import RankConfig


class Pool(NamedTuple):
    """A query's retrieval candidates."""

    codes: np.ndarray  # item codes, best first
    lse: torch.Tensor  # the log-normalizer of the softmax over the whole catalog
    logits: torch.Tensor  # float32 logits of ``codes`` (at the temperature)


def exact_pool(matrix: torch.Tensor, query: torch.Tensor, temperature: float, fetch: int,
               exclude: np.ndarray) -> Pool:
    """One query over the float32 retrieval ``matrix`` ``[N + 1, D]``: its best ``fetch``
    codes outside ``exclude`` and its exact log-normalizer (seen items included)."""
    logits = torch.from_numpy(matrix.numpy()[1:] @ query.float().numpy()) / temperature
    return pool_from_logits(logits, fetch, exclude)


def scoped_exclude(scope: torch.Tensor | None, scenario: int,
                   exclude: np.ndarray) -> np.ndarray:
    """``exclude`` plus the items outside ``scenario`` on a scoped catalog (``scope``
    ``[N + 1]``: each item's scenario, 0 = every one), so no retrieval path returns them.

    >>> scoped_exclude(torch.tensor([0, 1, 2, 0, 2]), 1, np.array([1])).tolist()
    [1, 2, 4]
    """
    exclude = np.asarray(exclude, dtype=np.int64)
    if scope is None:
        return exclude
    outside = np.flatnonzero(out_of_scope(scope, torch.tensor([scenario]))[0].numpy())
    return np.union1d(exclude, outside).astype(np.int64)


def user_scenario(history: Sequence[Step], default: int, scoped: bool) -> int:
    """The scenario of a request that names none: on a scoped catalog, the scenario of the
    user's latest interaction (a user of one part of a multi-source dataset is served that
    part's items); else, or without a history, ``default``.

    >>> user_scenario([Step(4, 1, 2), Step(7, 1, 3)], 1, True)
    3
    >>> user_scenario([Step(4, 1, 2)], 1, False), user_scenario([], 1, True)
    (1, 1)
    """
    latest = history[-1].scenario if history else 0
    return int(latest) if scoped and latest > 0 else default


def pool_from_logits(logits: torch.Tensor, fetch: int, exclude: np.ndarray) -> Pool:
    """The best ``fetch`` codes outside ``exclude`` by the logits ``[N]`` of items ``1..N``,
    with the log-normalizer over all of them."""
    lse = torch.logsumexp(logits, 0)  # before the seen items are masked
    exclude = np.asarray(exclude, dtype=np.int64)
    masked = logits.index_fill(0, torch.from_numpy(exclude[exclude > 0] - 1), float("-inf"))
    top = torch.topk(masked, min(fetch, len(masked)))
    found = torch.isfinite(top.values)
    return Pool(top.indices[found].numpy() + 1, lse, top.values[found])


class RankingPipeline:
    """``model``'s per-task scores for a pool, then ``stages`` in order, then the top k."""

    def __init__(self, model: MultiTaskRecommender, stages: Sequence[Stage],
                 policy: Stage | None = None) -> None:
        self.model, self.stages, self.policy = model, list(stages), policy

    @classmethod
    def from_config(cls, model: MultiTaskRecommender, config: RankConfig) -> RankingPipeline:
        return cls(model, build_stages(config))

    @torch.no_grad()
    def scored(self, states: UserStates, tables: ItemTables, pool: Pool) -> Candidates:
        """The pool with every task's score (``states``: one row)."""
        codes = torch.from_numpy(pool.codes)[None]
        scores = self.model.task_scores(states, tables, codes, pool.logits[None],
                                        pool.lse.reshape(1))
        return Candidates(pool.codes, {t: v[0].numpy() for t, v in scores.items()},
                          np.zeros(len(pool.codes)))

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates:
        """The stages over ``candidates``, then the first ``request.k``; a request for the
        policy runs it before ``explain`` (or last)."""
        policy = self.policy if request.policy else None
        if request.policy and policy is None:
            raise ValueError("this bundle has no ranking policy; train one with `mtrec "
                             "policy train` (or leave out policy)")
        for stage in self.stages:
            if policy is not None and stage.name == "explain":
                candidates, policy = policy.rank(request, candidates, context), None
            candidates = stage.rank(request, candidates, context)
        if policy is not None:
            candidates = policy.rank(request, candidates, context)
        return candidates.head(request.k)

    @staticmethod
    def cold() -> Candidates:
        """Candidates for a request without history (the ``cold_start`` stage fills them)."""
        return Candidates(np.zeros(0, dtype=np.int64), {}, np.zeros(0), cold_start=True)
