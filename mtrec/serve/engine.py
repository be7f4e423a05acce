"""The serving engine: a bundle's model plus what arrived since it was trained.

New items enter the indexes at once through their text (the item tower without an ID
embedding, as for cold items in training); events extend the user's sequence in memory
(the API layer stores them durably first).  Errors are plain exceptions (``KeyError`` for
an unknown id, ``ValueError`` for a bad value); HTTP codes belong to the API layer.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mtrec.data.schema import BEHAVIORS
from mtrec.models.text_match import TextMatch
from mtrec.recommender import Recommender
from mtrec.serve.index import IndexConfig, ItemIndex
from mtrec.serve.records import Ask, Encoder, Event, Hit, NewItem, Step
from mtrec.serve.rows import RowsAttribute, rows_of
from mtrec.serve.scan import CatalogScan, Pool
from mtrec.serve.trending import Trending
from mtrec.serve.user_states import UserStates
from mtrec.train.batches import gap_bucket

__all__ = ["Ask", "Encoder", "Engine", "Event", "Hit", "NewItem", "Step"]


class Engine:
    """Thread-safe: reads may run in parallel with one write (a lock guards state changes)."""

    # item tables ([N + 1, ...], row 0 padding), grown in place as items are added
    text, unit, table, matrix = RowsAttribute(), RowsAttribute(), RowsAttribute(), RowsAttribute()

    def __init__(self, rec: Recommender, index_config: IndexConfig | None = None,
                 encoder: Encoder | None = None, precompute_users: bool = True) -> None:
        self.rec, self.model, self.encoder = rec, rec.model, encoder
        self.scenarios = rec.catalog.scenarios
        self.item_ids = [str(i) for i in rec.catalog.item_ids]
        self.item_ids[0] = ""
        self.item_code = {item: code for code, item in enumerate(self.item_ids) if code}
        self.texts = list(rec.catalog.texts)
        self.categories = list(rec.catalog.categories) or [""] * len(self.item_ids)
        self.text = self.model.item_tower.text_vectors.clone()
        self.table = rec.item_table.clone()
        self.online: dict[str, list[Step]] = defaultdict(list)
        self.trending = Trending()
        d = rec.batcher.data
        self.trending.seed(d.scenario, d.item, d.ts)
        # What a session item or an event without a scenario looks like: the commonest kind
        # of training interaction (a rating-only dataset never saw a bare "view").
        self.session_bits = int(np.bincount(d.behaviors).argmax()) if len(d.item) else 1
        self.default_scenario = (int(np.bincount(d.scenario).argmax()) if len(d.item)
                                 else rec.scenario_code(None))
        self._user_index: ItemIndex | None = None
        self.lock = threading.RLock()
        self.index_config = index_config or IndexConfig()
        self.scan = CatalogScan(self.index_config.scan)
        self._build_indexes()
        self.user_states = (UserStates.compute(self.model, rec.batcher, self.table,
                                               len(rec.catalog.user_ids))
                            if precompute_users else None)

    @classmethod
    def from_bundle(cls, path: str | Path, index_config: IndexConfig | None = None,
                    encoder: Encoder | None = None, precompute_users: bool = True) -> Engine:
        return cls(Recommender.load(path), index_config, encoder, precompute_users)

    # ------------------------------------------------------------------ indexes
    def _build_indexes(self) -> None:
        codes = np.arange(1, len(self.item_ids), dtype=np.int64)
        self.unit = TextMatch.unit(self.text)
        self.matrix = torch.from_numpy(self._retrieval(self.table, self.unit))  # [N + 1, D]
        self.retrieval = ItemIndex(self.index_config).build(self.matrix[1:].numpy(), codes)
        self._rescan()
        self.similar = ItemIndex(self.index_config).build(_unit(self.table[1:]), codes)
        self.text_index = (ItemIndex(self.index_config).build(self.unit[1:].numpy(), codes)
                           if self.has_text else None)

    def _rescan(self) -> None:
        """Half copies for the exact catalog pass; none when an ANN index retrieves."""
        self.scan.rebuild(self.matrix if self.retrieval.kind_ == "exact" else None)

    @property
    def has_text(self) -> bool:
        return self.text.shape[1] > 0

    def _retrieval(self, table: torch.Tensor, unit: torch.Tensor) -> np.ndarray:
        """Retrieval rows from item-tower vectors and unit text vectors."""
        with torch.no_grad():
            if self.model.text_match is None or not self.model.text_match.active:
                return table.float().numpy()
            return torch.cat([table, unit], -1).float().numpy()

    # ------------------------------------------------------------------ ids
    def codes(self, items: Sequence[str]) -> np.ndarray:
        missing = [i for i in items if i not in self.item_code]
        if missing:
            raise KeyError(f"unknown item id(s): {', '.join(map(repr, missing[:5]))}")
        return np.array([self.item_code[i] for i in items], dtype=np.int64)

    def scenario(self, name: str | None) -> int:
        return self.default_scenario if name is None else self.rec.scenario_code(name)

    def knows_user(self, user: str) -> bool:
        return user in self.rec._user_code or user in self.online

    def history(self, user: str) -> list[Step]:
        """The user's interactions, oldest first: the bundle's, then those posted since."""
        base: list[Step] = []
        if user in self.rec._user_code:
            idx, off = self.rec.batcher.history(3)
            u = self.rec._user_code[user]
            rows = idx[off[u]:off[u + 1]]
            d = self.rec.batcher.data
            base = [Step(*row) for row in zip(d.item[rows].tolist(), d.behaviors[rows].tolist(),
                                               d.scenario[rows].tolist(), d.ts[rows].tolist(),
                                               strict=True)]
        return base + self.online.get(user, [])

    def session(self, codes: Sequence[int], scenario: int) -> list[Step]:
        """An anonymous session of items, as the commonest kind of training interaction."""
        return [Step(int(c), self.session_bits, scenario) for c in codes]

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def state(self, history: Sequence[Step], scenario: int,
              user: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """User state ``[dim]`` and next-item query ``[D]`` after ``history`` (``user``'s,
        if given), built as in evaluation (inputs with their time gaps; the gap to the next
        one unknown)."""
        h = self.tower_state(history, user) + self.model.target_gap.weight[0]
        query = (h + self.model.query_scenario.weight[scenario])[None]
        match = self.model.text_match
        if match is not None and match.active:
            lags = [s.code for s in reversed(history[-match.config.lags:])]
            recent = torch.tensor([lags + [-1] * (match.config.lags - len(lags))])
            query = torch.cat([query, match.query(self.unit, recent)], -1)
        return h, query[0]

    def tower_state(self, history: Sequence[Step], user: str | None = None) -> torch.Tensor:
        """The user tower's output after ``history``: ``user``'s precomputed row when
        ``history`` is still their bundle history, else a pass over ``history``."""
        if user is not None and self.user_states is not None and not self.online.get(user):
            code = self.rec._user_code.get(user)
            row = self.user_states.get(code) if code is not None else None
            if row is not None:
                return row
        return self._tower_state(history)

    def _tower_state(self, history: Sequence[Step]) -> torch.Tensor:
        """The user tower's output after ``history`` (its last ``max_len - 1`` steps)."""
        recent = list(history)[-(self.model.user_tower.config.max_len - 1):]
        n = len(recent) + 1
        rows = np.array([(-1, 0, 0, -1), *recent], dtype=np.int64).reshape(n, 4)
        items, behaviors, scenarios = (torch.from_numpy(rows[None, :, i]) for i in range(3))
        gaps = np.zeros((1, n), dtype=np.int64)
        gaps[0, 1:] = gap_bucket(rows[1:, 3], rows[:-1, 3])
        out = self.model.user_tower(self.table, items, behaviors, scenarios,
                                    torch.from_numpy(gaps))
        return out[0, n - 1]

    @torch.no_grad()
    def task_scores(self, h: torch.Tensor, query: torch.Tensor, codes: np.ndarray,
                    scenario: int, lse: torch.Tensor | None = None,
                    logits: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """Per-task scores of ``codes``.  next_item is the softmax probability over the
        whole catalog when it is searched exactly; past ``exact_max`` items (ANN), over
        ``codes`` and the best 200 other candidates (``lse``: a log-normalizer known;
        ``logits``: the next-item logits of ``codes``, known)."""
        out: dict[str, np.ndarray] = {}
        head = self.model.next_item
        if head is not None:
            if logits is None:
                logits = self._logits(query, torch.from_numpy(codes))
            if lse is None and self.retrieval.kind_ == "exact":
                lse = torch.logsumexp(self._logits(query), 0)
            elif lse is None:
                _, others = self.retrieval.search(query.float().numpy(), 200, codes)
                others_t = torch.from_numpy(others).float() / head.options.temperature
                lse = torch.logsumexp(torch.cat([logits, others_t]), 0)
            out["next_item"] = (logits - lse).exp().numpy()
        if self.model.mtl is not None:
            c = torch.from_numpy(codes)
            scen = torch.full((len(codes),), scenario, dtype=torch.long)
            heads = self.model.heads(h.expand(len(codes), -1), self.table[c], scen)
            for name, task in self.model.pointwise_tasks().items():
                out[name] = task.predict(heads).float().numpy()
        return out

    def _logits(self, query: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item logits of ``codes`` (all items 1..N when None)."""
        matrix = self.matrix.numpy()  # numpy's matrix-vector product is the faster here
        rows = matrix[1:] if codes is None else matrix[codes.numpy()]
        scores = torch.from_numpy(rows @ query.float().numpy())
        head = self.model.next_item
        return scores if head is None else scores / head.options.temperature

    @torch.no_grad()
    def candidates_many(self, queries: torch.Tensor, fetch: Sequence[int],
                        excludes: Sequence[np.ndarray]) -> list[Pool]:
        """Per query row, the ``fetch`` best codes not in its ``excludes`` row and the
        softmax log-normalizer: exact (one matrix product over the catalog serves every row
        and both needs) or from the index."""
        head = self.model.next_item
        t = head.options.temperature if head is not None else 1.0
        out: list[Pool] = []
        if self.retrieval.kind_ == "exact":
            return self.scan.candidates(queries, self.matrix, t, fetch, excludes)
        for query, n, exclude in zip(queries.float().numpy(), fetch, excludes, strict=True):
            with self.lock:
                pool, scores = self.retrieval.search(query, n, exclude)
            keep = pool > 0  # an ANN index pads short answers with code 0
            logits = torch.from_numpy(scores[keep]).float() / t
            out.append(Pool(pool[keep], torch.logsumexp(logits, 0), logits))
        return out

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

    def recommend_many(self, asks: Sequence[Ask]) -> list[list[Hit] | Exception]:
        """:meth:`recommend` for several requests at once, with one pass over the catalog for
        all of them (a matrix product rather than a matrix-vector product each).  A request
        that cannot be served gets its ``KeyError`` / ``ValueError`` in its place."""
        results: list[list[Hit] | Exception] = [ValueError("not served")] * len(asks)
        ready: list[tuple[int, dict[str, float], torch.Tensor, torch.Tensor]] = []
        for i, ask in enumerate(asks):
            try:
                weights = self.check_objective(ask.objective)
                ready.append((i, weights, *self.state(ask.history, ask.scenario, ask.user)))
            except (KeyError, ValueError) as exc:
                results[i] = exc
        if not ready:
            return results
        pools = self.candidates_many(
            torch.stack([query for *_, query in ready]),
            [asks[i].fetch for i, *_ in ready], [asks[i].exclude for i, *_ in ready])
        for (i, weights, h, query), pool in zip(ready, pools, strict=True):
            try:
                results[i] = self._rank(asks[i], weights, h, query, pool)
            except (KeyError, ValueError) as exc:
                results[i] = exc
        return results

    def _rank(self, ask: Ask, weights: dict[str, float], h: torch.Tensor, query: torch.Tensor,
              candidates: Pool) -> list[Hit]:
        """The top ``ask.k`` of the candidates by the weighted task scores, with
        explanations."""
        pool, logits = candidates.codes, candidates.logits
        if ask.category:
            keep = np.array([self.categories[c] == ask.category for c in pool], dtype=bool)
            pool, logits = pool[keep], logits[torch.from_numpy(keep)]
        scores = self.task_scores(h, query, pool, ask.scenario, candidates.lse, logits)
        total = np.zeros(len(pool))
        for task, w in weights.items():
            total += w * scores[task]
        top = np.argsort(-np.asarray(total), kind="stable")[:ask.k]
        because = self.because([int(pool[i]) for i in top], [s.code for s in ask.history])
        return [Hit(self.item_ids[pool[i]], float(total[i]),
                    {t: float(v[i]) for t, v in scores.items()}, self.texts[pool[i]], why)
                for i, why in zip(top, because, strict=True)]

    def check_objective(self, objective: dict[str, float] | None) -> dict[str, float]:
        """Task weights to rank by (default: the first task alone)."""
        tasks = self.model.task_names
        if not objective:
            return {tasks[0]: 1.0}
        unknown = [t for t in objective if t not in tasks]
        if unknown:
            raise ValueError(f"objective names task(s) {', '.join(unknown)} the model was not "
                             f"trained for; its tasks: {', '.join(tasks)}")
        return dict(objective)

    def because(self, codes: Sequence[int], history: Sequence[int],
                top: int = 3) -> list[list[tuple[str, float]]]:
        """Per code, the history items most like it (cosine of item-tower vectors over the
        latest 50 distinct history items)."""
        recent = list(dict.fromkeys(reversed(list(history))))[:50]
        if not recent or not codes:
            return [[] for _ in codes]
        vectors = _unit(self.table[torch.tensor([*codes, *recent])])
        sims = vectors[:len(codes)] @ vectors[len(codes):].T  # [codes, recent]
        order = np.argsort(-sims, axis=1, kind="stable")[:, :top]
        return [[(self.item_ids[recent[j]], float(sims[i, j])) for j in row]
                for i, row in enumerate(order)]

    # ------------------------------------------------------------------ lookups
    def similar_items(self, item: str, k: int) -> list[tuple[str, float]]:
        code = self.codes([item])[0]
        with self.lock:
            hits, scores = self.similar.search(_unit(self.table[code][None])[0], k,
                                               np.array([code]))
        return [(self.item_ids[c], float(s)) for c, s in zip(hits, scores, strict=True)]

    def search(self, text: str, k: int) -> list[tuple[str, float]]:
        if self.text_index is None or self.encoder is None:
            raise ValueError("search needs item text and a text encoder; this bundle has "
                             + ("no item text" if self.text_index is None else "no encoder"))
        vector = _unit(torch.from_numpy(self.encoder.encode([text])))[0]
        with self.lock:
            hits, scores = self.text_index.search(vector, k)
        return [(self.item_ids[c], float(s)) for c, s in zip(hits, scores, strict=True)]

    def trending_items(self, scenario: int | None, k: int) -> list[tuple[str, float]]:
        with self.lock:
            top = self.trending.top(scenario, k)
        return [(self.item_ids[c], w) for c, w in top]

    def similar_users(self, user: str, k: int) -> list[tuple[str, float]]:
        """Bundle users whose state (after their history) is closest to ``user``'s."""
        if not self.knows_user(user):
            raise KeyError(f"unknown user {user!r}")
        index = self._users()
        with torch.no_grad():
            h = self.tower_state(self.history(user), user)
        exclude = np.array([self.rec._user_code[user] + 1] if user in self.rec._user_code
                           else [], dtype=np.int64)
        with self.lock:
            hits, scores = index.search(_unit(h[None])[0], k, exclude)
        ids = self.rec.catalog.user_ids
        return [(str(ids[c - 1]), float(s)) for c, s in zip(hits, scores, strict=True)]

    @torch.no_grad()
    def _users(self) -> ItemIndex:
        """Index of every bundle user's state (codes = user code + 1), built on first use."""
        if self._user_index is None:
            n_users = len(self.rec.catalog.user_ids)
            states = self.user_states or UserStates.compute(self.model, self.rec.batcher,
                                                            self.table, n_users)
            self._user_index = ItemIndex(self.index_config).build(
                _unit(states.rows), np.arange(1, n_users + 1))
        return self._user_index

    def grow_synthetic(self, n_items: int, seed: int = 0) -> int:
        """For load benchmarks: grow the catalog to ``n_items`` with noisy copies of real
        items (their vectors plus Gaussian noise, so an ANN index sees realistic structure)
        and rebuild the retrieval index; similar-items and search keep the real catalog.
        Returns how many items were added."""
        extra = n_items - (len(self.item_ids) - 1)
        if extra <= 0:
            return 0
        gen = torch.Generator().manual_seed(seed)
        base = torch.randint(1, len(self.item_ids), (extra,), generator=gen)

        def noisy(x: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(extra, x.shape[1], generator=gen) * x[1:].std(0)
            return x[base] + 0.3 * noise

        with self.lock:
            first = len(self.item_ids)
            self.item_ids += [f"synthetic-{i}" for i in range(extra)]
            self.item_code.update({f"synthetic-{i}": first + i for i in range(extra)})
            self.texts += [self.texts[b] for b in base.tolist()]
            self.categories += [self.categories[b] for b in base.tolist()]
            self.table = torch.cat([self.table, noisy(self.table)])
            if self.has_text:
                self.text = torch.cat([self.text, noisy(self.text)])
            self.unit = TextMatch.unit(self.text)
            self.matrix = torch.from_numpy(self._retrieval(self.table, self.unit))
            codes = np.arange(1, len(self.item_ids), dtype=np.int64)
            self.retrieval = ItemIndex(self.index_config).build(self.matrix[1:].numpy(), codes)
            self._rescan()
        return extra

    # ------------------------------------------------------------------ writes
    def upsert_items(self, items: Sequence[NewItem],
                     vectors: np.ndarray | None = None) -> list[int]:
        """Add or re-describe items; they are searchable and recommendable at once.
        ``vectors``: their texts' vectors if already made by this engine's encoder."""
        if not items:
            return []
        self.check_can_add_items()
        given = self.embed([i.text for i in items]) if vectors is None else vectors
        if given.shape != (len(items), self.text.shape[1]):
            raise ValueError(f"vectors of shape {given.shape} for {len(items)} items of "
                             f"text dimension {self.text.shape[1]}")
        text = torch.from_numpy(np.ascontiguousarray(given, dtype=np.float32))
        with torch.no_grad():
            item_vectors = self.model.item_tower.text_item_vectors(text)
        with self.lock:
            known = len(self.item_ids)
            codes = [self._code_for(i) for i in items]
            if self.user_states is not None:  # re-described items change users' inputs
                self.user_states.items_changed([c for c in codes if c < known])
            self._grow_tables()
            idx = torch.tensor(codes)
            unit = TextMatch.unit(text)
            self.text[idx], self.unit[idx], self.table[idx] = text, unit, item_vectors
            arr = np.asarray(codes, dtype=np.int64)
            rows = self._retrieval(item_vectors, unit)
            self.matrix[idx] = torch.from_numpy(rows)
            self.scan.set_rows(idx, self.matrix[idx])
            self.retrieval.add(rows, arr)
            self.similar.add(_unit(item_vectors), arr)
            assert self.text_index is not None
            self.text_index.add(unit.numpy(), arr)
        return codes

    def _grow_tables(self) -> None:
        """Zero rows for codes added since the tables were last sized (once per batch)."""
        for name in ("text", "unit", "table", "matrix"):
            rows_of(self, name).resize(len(self.item_ids))
        self.scan.grow(self.matrix)

    @torch.no_grad()
    def warm_up(self) -> None:
        """Run once what a first request would otherwise pay for (lazy set-up in the
        encoder's and the catalog pass's first calls); changes nothing."""
        if self.encoder is not None and self.has_text:
            vectors = torch.from_numpy(self.encoder.encode(["warm-up"]))
            self.model.item_tower.text_item_vectors(vectors)
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

    def _code_for(self, item: NewItem) -> int:
        code = self.item_code.get(item.item_id)
        if code is None:
            code = len(self.item_ids)
            self.item_ids.append(item.item_id)
            self.texts.append("")
            self.categories.append("")
            self.item_code[item.item_id] = code
        self.texts[code], self.categories[code] = item.text, item.category
        return code

    def add_events(self, events: Sequence[Event]) -> None:
        """Extend the users' sequences (call after the events are stored durably)."""
        codes = self.codes([e.item_id for e in events])
        with self.lock:
            for event, code in zip(events, codes, strict=True):
                scen = self.scenario(event.scenario)
                bits = 1 << BEHAVIORS.index(event.behavior)
                ts = int(event.ts) if event.ts is not None else int(time.time())
                self.online[event.user_id].append(Step(int(code), bits, scen, ts))
                self.trending.add(scen, int(code), event.ts)


def _unit(x: torch.Tensor) -> np.ndarray:
    return TextMatch.unit(x).numpy()
