"""Load a bundle and answer: what to recommend to a user, and how each task scores items.

Per-task scores: ``next_item`` is the item's softmax probability over the whole catalog;
binary tasks give a probability; ``rating`` a predicted rating; ``engagement`` the expected
number of interactions in its horizon.  ``objective`` weighs them: the ranking score is
``sum(weight[task] * score[task])`` over the candidates retrieval returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec.config import from_dict
from mtrec.data.interactions import Catalog, Interactions
from mtrec.models.model import MultiTaskRecommender, build_model
from mtrec.models.text_match import recent_items
from mtrec.train import bundle
from mtrec.train.batches import SequenceBatcher
from mtrec.train.run import RunConfig

ALL_PARTS = 3  # history for recommending: every interaction the bundle knows


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    scores: dict[str, float]
    text: str


class Recommender:
    def __init__(self, model: MultiTaskRecommender, meta: dict[str, Any], catalog: Catalog,
                 interactions: Interactions) -> None:
        self.model, self.meta, self.catalog = model.eval(), meta, catalog
        self.batcher = SequenceBatcher(interactions, model.user_tower.config.max_len, {})
        self._user_code = {str(u): k for k, u in enumerate(catalog.user_ids)}
        self._item_code = {str(i): k for k, i in enumerate(catalog.item_ids) if k}
        with torch.no_grad():
            self.item_table = model.item_tower()
            self.retrieval_table = model.retrieval_items(self.item_table)

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
        return cls(model, meta, bundle.read_catalog(path), bundle.read_interactions(path))

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.model.task_names

    def user_code(self, user: str) -> int:
        if user not in self._user_code:
            raise KeyError(f"unknown user {user!r}: not in the bundle's {len(self._user_code)}"
                           f" users of {self.meta['dataset']}")
        return self._user_code[user]

    def item_codes(self, items: list[str]) -> np.ndarray:
        missing = [i for i in items if i not in self._item_code]
        if missing:
            raise KeyError(f"unknown item(s) {', '.join(map(repr, missing[:5]))} in the "
                           f"catalog of {self.meta['dataset']}")
        return np.array([self._item_code[i] for i in items], dtype=np.int64)

    def scenario_code(self, scenario: str | None) -> int:
        if scenario is None:
            return 1 if len(self.catalog.scenarios) == 2 else 0
        if scenario not in self.catalog.scenarios[1:]:
            raise KeyError(f"unknown scenario {scenario!r}; known: "
                           f"{', '.join(self.catalog.scenarios[1:])}")
        return self.catalog.scenarios.index(scenario)

    def history(self, user: str) -> np.ndarray:
        """Item codes the user interacted with, oldest first."""
        idx, off = self.batcher.history(ALL_PARTS)
        u = self.user_code(user)
        return np.asarray(self.batcher.data.item[idx[off[u]:off[u + 1]]])

    @torch.no_grad()
    def _state(self, user: str, scenario: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The user's state ``[dim]`` and next-item query ``[D]`` in ``scenario``."""
        batch, _ = self.batcher.eval_batch([self.user_code(user)], ALL_PARTS)
        h = self.model.user_tower(self.item_table, batch.items, batch.behaviors,
                                  batch.scenarios, batch.gaps)
        # The time until the next interaction is unknown here: gap bucket 0.
        last = torch.tensor([batch.items.shape[1] - 1])
        h = h[0, last[0]] + self.model.target_gap.weight[0]
        recent = recent_items(batch.items, torch.zeros_like(last), last, self.model.match_lags)
        query = self.model.retrieval_query(
            (h + self.model.query_scenario.weight[scenario])[None], recent)[0]
        return h, query

    @torch.no_grad()
    def _task_scores(self, state: tuple[torch.Tensor, torch.Tensor], items: np.ndarray,
                     scenario: int) -> dict[str, np.ndarray]:
        h, query = state
        codes = torch.from_numpy(items)
        scen = torch.full((len(items),), scenario, dtype=torch.long)
        out: dict[str, np.ndarray] = {}
        if self.model.next_item is not None:
            probs = torch.softmax(self.model.next_item.logits(query[None],
                                                              self.retrieval_table[1:]),
                                  -1)[0]
            out["next_item"] = probs[codes - 1].numpy()
        hs = h.expand(len(items), -1)
        heads = self.model.heads(hs, self.item_table[codes], scen)
        for name, task in self.model.pointwise_tasks().items():
            out[name] = task.predict(heads).float().numpy()
        return out

    def score(self, user: str, items: list[str],
              scenario: str | None = None) -> dict[str, list[float]]:
        """Per-task scores of ``items`` for ``user``."""
        s = self.scenario_code(scenario)
        scores = self._task_scores(self._state(user, s), self.item_codes(items), s)
        return {k: v.tolist() for k, v in scores.items()}

    @torch.no_grad()
    def recommend(self, user: str, k: int = 10, scenario: str | None = None,
                  objective: dict[str, float] | None = None,
                  candidates: int = 200) -> list[Recommendation]:
        """Top ``k`` items the user has not interacted with, ranked by ``objective``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        weights = self._objective(objective)
        s = self.scenario_code(scenario)
        state = self._state(user, s)
        pool = np.arange(1, self.catalog.n_items + 1)
        pool = pool[~np.isin(pool, self.history(user))]
        if self.model.next_item is not None and len(pool) > candidates:
            logits = (self.retrieval_table[torch.from_numpy(pool)] @ state[1]).numpy()
            pool = pool[np.argsort(-logits, kind="stable")[:max(candidates, k)]]
        scores = self._task_scores(state, pool, s)
        total = np.zeros(len(pool))
        for task, w in weights.items():
            total += w * scores[task]
        top = np.argsort(-np.asarray(total), kind="stable")[:k]
        return [Recommendation(str(self.catalog.item_ids[pool[i]]), float(total[i]),
                               {t: float(v[i]) for t, v in scores.items()},
                               self.catalog.texts[pool[i]]) for i in top]

    def _objective(self, objective: dict[str, float] | None) -> dict[str, float]:
        if not objective:
            return {self.tasks[0]: 1.0}
        unknown = [t for t in objective if t not in self.tasks]
        if unknown:
            raise KeyError(f"objective names task(s) {', '.join(unknown)} this bundle was not "
                           f"trained for; its tasks: {', '.join(self.tasks)}")
        return dict(objective)
