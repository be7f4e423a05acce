"""The serving engine: a bundle's model plus what arrived since it was trained.

It composes the live catalog (``serve/catalog.py``: items, vectors, growth), the users'
histories (``serve/histories.py``), retrieval (``serve/retrieval.py``) and the bundle's
ranking pipeline (``mtrec/rank``), the same one the offline ``Recommender`` runs.  Scores
come from the model's scoring path (``encode`` -> ``task_scores``).  Errors are plain
exceptions (``KeyError`` for an unknown id, ``ValueError`` for a bad value); HTTP codes
belong to the API layer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mtrec.models.batches import history_batch, recent_codes
from mtrec.models.model import UserStates
from mtrec.rank.base import Candidates, RankContext, RankRequest, Step
from mtrec.rank.blend import resolve_objective
from mtrec.rank.pipeline import Pool, scoped_exclude
from mtrec.rank.trending import Trending
from mtrec.recommender import Recommender
from mtrec.serve.catalog import ServingCatalog
from mtrec.serve.histories import Histories
from mtrec.serve.index import IndexConfig, ItemIndex
from mtrec.serve.records import Ask, Encoder, Event, Hit, NewItem
from mtrec.serve.retrieval import Retrieval, unit_rows
from mtrec.serve.user_states import UserStates as PrecomputedStates

__all__ = ["Ask", "Encoder", "Engine", "Event", "Hit", "NewItem", "Step"]


class Engine:
    """Thread-safe: reads may run in parallel with one write (a lock guards state changes)."""

    def __init__(self, rec: Recommender, index_config: IndexConfig | None = None,
                 encoder: Encoder | None = None, precompute_users: bool = True) -> None:
        self.rec, self.model, self.encoder = rec, rec.model, encoder
        self.scenarios = rec.catalog.scenarios
        self.catalog = ServingCatalog(rec)
        self.histories = Histories(rec)
        d = rec.batcher.data
        self.trending = Trending()
        self.trending.seed(d.scenario, d.item, d.ts)
        self.default_scenario = rec.default_scenario
        self.lock = threading.RLock()
        self.index_config = index_config or IndexConfig()
        task = self.model.retrieval_task
        self.retrieval = Retrieval(self.catalog, self.index_config,
                                   task.temperature if task is not None else 1.0)
        self.pipeline = rec.pipeline
        self._user_index: ItemIndex | None = None
        self.user_states = (PrecomputedStates.compute(self.model, rec.batcher,
                                                      self.catalog.vectors,
                                                      len(rec.catalog.user_ids))
                            if precompute_users else None)

    @classmethod
    def from_bundle(cls, path: str | Path, index_config: IndexConfig | None = None,
                    encoder: Encoder | None = None, precompute_users: bool = True) -> Engine:
        return cls(Recommender.load(path), index_config, encoder, precompute_users)

    # ------------------------------------------------------------------ ids, histories
    @property
    def item_ids(self) -> list[str]:
        return self.catalog.item_ids

    @property
    def item_code(self) -> dict[str, int]:
        return self.catalog.item_code

    @property
    def texts(self) -> list[str]:
        return self.catalog.texts

    @property
    def has_text(self) -> bool:
        return self.catalog.has_text

    @property
    def pipeline_candidates(self) -> int:
        """Retrieval candidates per request (the bundle's rank config)."""
        return self.rec.rank_config.candidates

    def codes(self, items: Sequence[str]) -> np.ndarray:
        return self.catalog.codes(items)

    def scenario(self, name: str | None) -> int:
        return self.rec.scenario_code(name)

    def request_scenario(self, name: str | None, history: Sequence[Step]) -> int:
        """The named scenario; none named: on a scoped catalog the user's latest one."""
        return self.rec.request_scenario(name, list(history))

    def knows_user(self, user: str) -> bool:
        return self.histories.knows(user)

    def history(self, user: str) -> list[Step]:
        """The user's interactions, oldest first: the bundle's, then those posted since."""
        return self.histories.of(user)

    def session(self, codes: Sequence[int], scenario: int) -> list[Step]:
        return self.histories.session(codes, scenario)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def state(self, history: Sequence[Step], scenario: int,
              user: str | None = None) -> UserStates:
        """The state after ``history`` (``user``'s, if given) in ``scenario``, one row,
        built as in evaluation (inputs with their time gaps; the gap to the next one
        unknown)."""
        h = self.tower_state(history, user)[None]
        return self.model.finish_states(h, None, torch.tensor([scenario]),
                                        recent_codes(history, self.model.match_lags),
                                        self.catalog.tables)

    def tower_state(self, history: Sequence[Step], user: str | None = None) -> torch.Tensor:
        """The user tower's output after ``history``: ``user``'s precomputed row when
        ``history`` is still their bundle history, else a pass over ``history``."""
        if user is not None and self.user_states is not None \
                and not self.histories.changed(user):
            code = self.histories.in_bundle(user)
            row = self.user_states.get(code) if code is not None else None
            if row is not None:
                return row
        return self._tower_state(history)

    def _tower_state(self, history: Sequence[Step]) -> torch.Tensor:
        batch = history_batch(history, 0, self.model.user_tower.config.max_len)
        return self.model.tower(batch, self.catalog.tables)[0]

    @torch.no_grad()
    def task_scores(self, states: UserStates, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Per-task scores of ``codes`` for one state (next_item: the softmax probability
        over the whole catalog; past ``exact_max`` items, see ``Retrieval.normalizer``)."""
        c = torch.from_numpy(codes)[None]
        tables = self.catalog.tables
        logits = lse = None
        if self.model.retrieval_task is not None:
            logits = self.model.item_logits(states, tables, c)
            lse = self.retrieval.normalizer(states.query[0], codes, logits[0]).reshape(1)
        scores = self.model.task_scores(states, tables, c, logits, lse)
        return {k: v[0].numpy() for k, v in scores.items()}

    def check_objective(self, objective: dict[str, float] | None) -> dict[str, float]:
        """Task weights to rank by (default: the first task alone)."""
        return resolve_objective(objective, self.model.task_names)

    def context(self) -> RankContext:
        return RankContext(self.catalog.vectors, self.catalog.categories, self._trending,
                           self.model.task_names)

    def _trending(self, scenario: int | None, k: int) -> list[tuple[int, float]]:
        with self.lock:
            return self.trending.top(scenario, k)

    def recommend(self, history: Sequence[Step], k: int, scenario: int,
                  objective: dict[str, float] | None = None,
                  exclude: Sequence[int] | np.ndarray = (),
                  category: str | None = None, candidates: int = 200,
                  user: str | None = None) -> list[Hit]:
        """Top ``k`` by ``objective`` (task weights) among the retrieval candidates after
        ``history`` (``user``'s, if given: their precomputed state may serve)."""
        ask = Ask(history, k, scenario, objective, np.asarray(exclude, dtype=np.int64),
                  category, candidates, user)
        (out,) = self.recommend_many([ask])
        if isinstance(out, Exception):
            raise out
        return out

    def recommend_many(self, asks: Sequence[RankRequest]) -> list[list[Hit] | Exception]:
        """:meth:`recommend` for several requests at once, with one pass over the catalog for
        all of them (a matrix product rather than a matrix-vector product each).  A request
        that cannot be served gets its ``KeyError`` / ``ValueError`` in its place."""
        results: list[list[Hit] | Exception] = [ValueError("not served")] * len(asks)
        found: dict[int, Candidates] = {}
        ready: list[tuple[int, UserStates]] = []
        for i, ask in enumerate(asks):
            try:
                self.check_objective(ask.objective)
                if not ask.history:
                    found[i] = self.pipeline.cold()
                else:
                    ready.append((i, self.state(ask.history, ask.scenario, ask.user)))
            except (KeyError, ValueError) as exc:
                results[i] = exc
        pools: list[Pool] = []
        tables = self.catalog.tables
        if ready:  # on a multi-scenario catalog, only the items of the request's scenario
            pools = self.retrieval.candidates(
                torch.cat([s.query for _, s in ready]), [asks[i].fetch for i, _ in ready],
                [scoped_exclude(tables.scope, asks[i].scenario, asks[i].exclude)
                 for i, _ in ready])
        for (i, states), pool in zip(ready, pools, strict=True):
            found[i] = self.pipeline.scored(states, tables, pool)
        context = self.context()
        for i, cands in found.items():
            try:
                results[i] = self._hits(self.pipeline.rank(asks[i], cands, context))
            except (KeyError, ValueError) as exc:
                results[i] = exc
        return results

    def _hits(self, ranked: Candidates) -> list[Hit]:
        ids, texts = self.catalog.item_ids, self.catalog.texts
        return [Hit(ids[c], float(ranked.total[i]),
                    {t: float(v[i]) for t, v in ranked.scores.items()}, texts[c],
                    [(ids[h], v) for h, v in (ranked.because[i] if ranked.because else ())])
                for i, c in enumerate(ranked.codes.tolist())]

    # ------------------------------------------------------------------ lookups
    def similar_items(self, item: str, k: int) -> list[tuple[str, float]]:
        code = self.codes([item])[0]
        with self.lock:
            hits, scores = self.retrieval.similar_items(int(code), k)
        return [(self.item_ids[c], float(s)) for c, s in zip(hits, scores, strict=True)]

    def search(self, text: str, k: int) -> list[tuple[str, float]]:
        if self.retrieval.text is None or self.encoder is None:
            raise ValueError("search needs item text and a text encoder; this bundle has "
                             + ("no item text" if self.retrieval.text is None else "no encoder"))
        vector = self.encoder.encode([text])[0]
        with self.lock:
            hits, scores = self.retrieval.search(vector, k)
        return [(self.item_ids[c], float(s)) for c, s in zip(hits, scores, strict=True)]

    def trending_items(self, scenario: int | None, k: int) -> list[tuple[str, float]]:
        return [(self.item_ids[c], w) for c, w in self._trending(scenario, k)]

    def similar_users(self, user: str, k: int) -> list[tuple[str, float]]:
        """Bundle users whose state (after their history) is closest to ``user``'s."""
        if not self.knows_user(user):
            raise KeyError(f"unknown user {user!r}")
        index = self._users()
        with torch.no_grad():
            h = self.tower_state(self.history(user), user)
        code = self.histories.in_bundle(user)
        exclude = np.array([code + 1] if code is not None else [], dtype=np.int64)
        with self.lock:
            hits, scores = index.search(unit_rows(h[None])[0], k, exclude)
        ids = self.rec.catalog.user_ids
        return [(str(ids[c - 1]), float(s)) for c, s in zip(hits, scores, strict=True)]

    @torch.no_grad()
    def _users(self) -> ItemIndex:
        """Index of every bundle user's state (codes = user code + 1), built on first use."""
        if self._user_index is None:
            n_users = len(self.rec.catalog.user_ids)
            states = self.user_states or PrecomputedStates.compute(
                self.model, self.rec.batcher, self.catalog.vectors, n_users)
            self._user_index = ItemIndex(self.index_config.lookup()).build(
                unit_rows(states.rows), np.arange(1, n_users + 1))
        return self._user_index

    # ------------------------------------------------------------------ writes
    def upsert_items(self, items: Sequence[NewItem],
                     vectors: np.ndarray | None = None) -> list[int]:
        """Add or re-describe items; they are searchable and recommendable at once.
        ``vectors``: their texts' vectors if already made by this engine's encoder."""
        if not items:
            return []
        self.check_can_add_items()
        given = self.embed([i.text for i in items]) if vectors is None else vectors
        dim = self.catalog.text.shape[1]
        if given.shape != (len(items), dim):
            raise ValueError(f"vectors of shape {given.shape} for {len(items)} items of "
                             f"text dimension {dim}")
        text = torch.from_numpy(np.ascontiguousarray(given, dtype=np.float32))
        with self.lock:
            codes, known = self.catalog.put(items, text)
            if self.user_states is not None:  # re-described items change users' inputs
                self.user_states.items_changed([c for c in codes if c < known])
            self.retrieval.added(codes)
        return codes

    @torch.no_grad()
    def warm_up(self) -> None:
        """Run once what a first request would otherwise pay for (lazy set-up in the
        encoder's and the catalog pass's first calls); changes nothing."""
        if self.encoder is not None and self.has_text:
            vectors = torch.from_numpy(self.encoder.encode(["warm-up"]))
            self.model.item_tower.text_item_vectors(vectors)
        if len(self.catalog):
            self.recommend(self.session([1], self.default_scenario), 10, self.default_scenario)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Text vectors ``[len(texts), text_dim]`` from the encoder, as for new items."""
        return self.check_can_add_items().encode(texts)

    @property
    def encoder_key(self) -> str | None:
        """The encoder's identity (weights, pooling, length), when it tells it."""
        key = getattr(self.encoder, "model_key", None)
        return key if isinstance(key, str) else None

    def check_can_add_items(self) -> Encoder:
        if not self.has_text or self.encoder is None:
            raise ValueError("adding items needs a bundle trained with item text and an encoder")
        return self.encoder

    def add_events(self, events: Sequence[Event],
                   trending: Sequence[float] | None = None) -> None:
        """Extend the users' sequences (call after the events are stored durably), counting
        each in trending with its weight in ``trending`` (None: 1 each)."""
        if not events:
            return
        codes = self.codes([e.item_id for e in events])
        weights = [1.0] * len(events) if trending is None else trending
        with self.lock:
            for event, code, w in zip(events, codes, weights, strict=True):
                scen = self.scenario(event.scenario)
                self.histories.add(event, int(code), scen)
                self.trending.add(scen, int(code), event.ts, w)

    def count_trending(self, events: Sequence[Event], weights: Sequence[float]) -> None:
        """Add ``weights`` (negative: take back) to the events' items in trending only."""
        codes = self.codes([e.item_id for e in events])
        with self.lock:
            for event, code, w in zip(events, codes, weights, strict=True):
                self.trending.add(self.scenario(event.scenario), int(code), event.ts, w)

    def trending_weight(self, item: str) -> float:
        """The item's trending weight now (its decayed count over all scenarios)."""
        code = self.item_code.get(item)
        if code is None:
            return 0.0
        with self.lock:
            return self.trending.weight_of(code)

    def in_bundle(self, user: str) -> bool:
        """Whether the bundle was trained on ``user`` (a user new to it is trusted less)."""
        return self.histories.in_bundle(user) is not None
