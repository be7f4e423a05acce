"""Load a bundle and answer: what to recommend to a user, and how each task scores items.

Per-task scores: ``next_item`` is the item's softmax probability over the whole catalog;
binary tasks give a probability; ``rating`` a predicted rating; ``engagement`` the expected
number of interactions in its horizon.  Ranking is the bundle's ranking pipeline
(:mod:`mtrec.rank`): exact retrieval of the best candidates, their per-task scores, then the
configured stages (by default: cold start, filter, objective blend, explanation).

Rules shared with the service: no scenario given means the commonest scenario of the
bundle's interactions; an unknown user, item or scenario is a ``KeyError``; a value that
cannot be served (``k < 1``, an objective naming a task the model lacks) a ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec import bundle
from mtrec.config import from_dict
from mtrec.data.interactions import Catalog, Interactions
from mtrec.models.batches import SequenceBatcher, history_batch
from mtrec.models.model import MultiTaskRecommender, UserStates, build_model
from mtrec.policy.store import has_policy, load_policy
from mtrec.rank.base import Candidates, RankContext, RankRequest, Step
from mtrec.rank.blend import resolve_objective
from mtrec.rank.config import RankConfig
from mtrec.rank.pipeline import RankingPipeline, exact_pool, scoped_exclude, user_scenario
from mtrec.rank.policy import PolicyStage
from mtrec.rank.trending import Trending
from mtrec.run_config import RunConfig

ALL_PARTS = 3  # history for recommending: every interaction the bundle knows


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    scores: dict[str, float]
    text: str
    because: list[tuple[str, float]] = field(default_factory=list)  # (history item, cosine)


class Recommender:
    def __init__(self, model: MultiTaskRecommender, meta: dict[str, Any], catalog: Catalog,
                 interactions: Interactions, rank: RankConfig | None = None) -> None:
        self.model, self.meta, self.catalog = model.eval(), meta, catalog
        self.rank_config = rank or RankConfig()
        self.batcher = SequenceBatcher(interactions, model.user_tower.config.max_len, {})
        self._user_code = {str(u): k for k, u in enumerate(catalog.user_ids)}
        self._item_code = {str(i): k for k, i in enumerate(catalog.item_ids) if k}
        self.default_scenario = interactions.default_scenario()
        with torch.no_grad():
            self.tables = model.item_tables()
        self.pipeline = RankingPipeline.from_config(model, self.rank_config)
        self.trending = Trending()
        self.trending.seed(interactions.scenario, interactions.item, interactions.ts)
        categories = list(catalog.categories) or [""] * len(catalog.item_ids)
        self.context = RankContext(self.tables.vectors, categories, self.trending.top,
                                   model.task_names)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        path = Path(path)
        meta = bundle.read_meta(path)
        config = from_dict(RunConfig, meta["run"], f"{path / 'config.json'}: run")
        weights = bundle.read_weights(path)
        text = weights.get("item_tower.text_vectors")
        vectors = text if text is not None and text.shape[1] > 0 else None
        model = build_model(config.model, meta["n_items"], meta["n_scenarios"], vectors)
        model.load_state_dict(weights)
        catalog = bundle.read_catalog(path)
        model.set_item_scope(catalog.item_scenarios)  # (empty: nothing scoped)
        rec = cls(model, meta, catalog, bundle.read_interactions(path), config.rank)
        if has_policy(path):
            policy, popularity, info = load_policy(path)
            rec.pipeline.policy = PolicyStage(policy, popularity, info)
        return rec

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.model.task_names

    def user_code(self, user: str) -> int:
        if user not in self._user_code:
            raise KeyError(f"unknown user {user!r}: not in the bundle's {len(self._user_code)}"
                           f" users of {self.meta['dataset']}")
        return self._user_code[user]

    def knows_user(self, user: str) -> bool:
        return user in self._user_code

    def item_codes(self, items: list[str]) -> np.ndarray:
        missing = [i for i in items if i not in self._item_code]
        if missing:
            raise KeyError(f"unknown item(s) {', '.join(map(repr, missing[:5]))} in the "
                           f"catalog of {self.meta['dataset']}")
        return np.array([self._item_code[i] for i in items], dtype=np.int64)

    def scenario_code(self, scenario: str | None) -> int:
        if scenario is None:
            return self.default_scenario
        if scenario not in self.catalog.scenarios[1:]:
            raise KeyError(f"unknown scenario {scenario!r}; known: "
                           f"{', '.join(self.catalog.scenarios[1:])}")
        return self.catalog.scenarios.index(scenario)

    def request_scenario(self, scenario: str | None, steps: list[Step]) -> int:
        """The named scenario's code; none named: see :func:`user_scenario`."""
        if scenario is not None:
            return self.scenario_code(scenario)
        return user_scenario(steps, self.default_scenario, self.catalog.scoped)

    def steps(self, user: str) -> list[Step]:
        """The user's interactions in the bundle, oldest first."""
        idx, off = self.batcher.history(ALL_PARTS)
        u = self.user_code(user)
        rows = idx[off[u]:off[u + 1]]
        d = self.batcher.data
        return [Step(*row) for row in zip(d.item[rows].tolist(), d.behaviors[rows].tolist(),
                                           d.scenario[rows].tolist(), d.ts[rows].tolist(),
                                           strict=True)]

    def history(self, user: str) -> np.ndarray:
        """Item codes the user interacted with, oldest first."""
        return np.array([s.code for s in self.steps(user)], dtype=np.int64)

    @torch.no_grad()
    def state(self, steps: list[Step], scenario: int) -> UserStates:
        """The state after ``steps`` in ``scenario`` (one row; the time until the next
        interaction unknown)."""
        batch = history_batch(steps, scenario, self.model.user_tower.config.max_len)
        return self.model.encode(batch, self.tables)

    @torch.no_grad()
    def score(self, user: str, items: list[str],
              scenario: str | None = None) -> dict[str, list[float]]:
        """Per-task scores of ``items`` for ``user``."""
        steps = self.steps(user)
        s = self.request_scenario(scenario, steps)
        codes = torch.from_numpy(self.item_codes(items))[None]
        scores = self.model.task_scores(self.state(steps, s), self.tables, codes)
        return {k: v[0].tolist() for k, v in scores.items()}

    @torch.no_grad()
    def recommend(self, user: str, k: int = 10, scenario: str | None = None,
                  objective: dict[str, float] | None = None,
                  candidates: int | None = None, policy: bool = False) -> list[Recommendation]:
        """Top ``k`` items the user has not interacted with, ranked by ``objective``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        resolve_objective(objective, self.tasks)
        steps = self.steps(user)
        s = self.request_scenario(scenario, steps)
        seen = np.unique([st.code for st in steps]).astype(np.int64)
        seen = scoped_exclude(self.tables.scope, s, seen)  # and other scenarios' items
        request = RankRequest(steps, k, s, objective, seen,
                              candidates=candidates or self.rank_config.candidates,
                              user=user, scenario_given=scenario is not None, policy=policy)
        if not steps or self.model.retrieval_task is None:
            found = self.pipeline.cold() if not steps else self._all_items(request)
        else:
            found = self.retrieve(steps, s, request.fetch, seen)
        ranked = self.pipeline.rank(request, found, self.context)
        return [Recommendation(str(self.catalog.item_ids[c]), float(ranked.total[i]),
                               {t: float(v[i]) for t, v in ranked.scores.items()},
                               self.catalog.texts[c],
                               [(str(self.catalog.item_ids[h]), v) for h, v in
                                (ranked.because[i] if ranked.because else ())])
                for i, c in enumerate(ranked.codes.tolist())]

    @torch.no_grad()
    def retrieve(self, steps: list[Step], scenario: int, fetch: int,
                 exclude: np.ndarray) -> Candidates:
        """The best ``fetch`` items after ``steps`` outside ``exclude``, in retrieval order,
        with every task's score (needs a retrieval task and a non-empty history)."""
        task = self.model.retrieval_task
        if task is None or not steps:
            raise ValueError("retrieval needs a model with a retrieval task and a history")
        state = self.state(steps, scenario)
        pool = exact_pool(self.tables.retrieval, state.query[0], task.temperature, fetch,
                          exclude)
        return self.pipeline.scored(state, self.tables, pool)

    def _all_items(self, request: RankRequest) -> Candidates:
        """Without a retrieval task every unseen item is a candidate, scored pointwise."""
        codes = np.setdiff1d(np.arange(1, self.catalog.n_items + 1), request.exclude)
        state = self.state(list(request.history), request.scenario)
        scores = self.model.task_scores(state, self.tables, torch.from_numpy(codes)[None])
        return Candidates(codes, {t: v[0].numpy() for t, v in scores.items()},
                          np.zeros(len(codes)))
