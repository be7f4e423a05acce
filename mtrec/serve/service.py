"""The service the routes share: the engine, the durable log it follows, and the guard that
decides, in the log's order, which events are held and how much each moves trending
(``serve/guard.py``).  Every worker replays the same log to the same state."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from functools import partial

import numpy as np

from mtrec.serve.batching import MicroBatcher
from mtrec.serve.engine import Ask, Engine, Hit, NewItem
from mtrec.serve.events import EventLog, StoredItem
from mtrec.serve.guard import AccountRule, BurstRule, GuardConfig, TrendingGuard
from mtrec.serve.records import Event


class Service:
    """The engine plus the durable log it follows (shared by the routes)."""

    def __init__(self, engine: Engine, log: EventLog | None,
                 guard: GuardConfig | None = None,
                 key_budgets: dict[str, float] | None = None) -> None:
        self.engine, self.log = engine, log
        self.guard = guard = guard or GuardConfig()
        self.bursts, self.accounts = BurstRule(guard), AccountRule(guard)
        self.weights: TrendingGuard[Event] = TrendingGuard(guard, key_budgets)
        self.recommender: MicroBatcher[Ask, list[Hit]] = MicroBatcher(engine.recommend_many)
        self.seen_event, self.seen_item, self.seen_version = 0, 0, -1
        # requests run in a thread pool and each syncs first: without the lock two of them
        # read the same ``seen_event`` and both apply the rows after it (events twice)
        self.sync_lock = threading.Lock()

    def _add_items(self, items: list[StoredItem]) -> None:
        """Items from the log, with the vectors stored with them where this worker's
        encoder made them (no encoder pass), the others encoded here."""
        e = self.engine
        mine = [i.encoder is not None and i.encoder == e.encoder_key and i.vector is not None
                and len(i.vector) == e.catalog.text.shape[1] for i in items]
        known = [i for i, ok in zip(items, mine, strict=True) if ok]
        if known:
            vectors = [i.vector for i in known if i.vector is not None]  # all of them
            e.upsert_items([NewItem(i.item_id, i.text, i.category) for i in known],
                           np.stack(vectors))
        rest = [NewItem(i.item_id, i.text, i.category)
                for i, ok in zip(items, mine, strict=True) if not ok]
        if rest:
            e.upsert_items(rest)

    def sync(self, force: bool = False) -> None:
        """Apply items and events stored since the last call (by any worker; ``force``
        after this worker's own writes, which do not change the log's version)."""
        if self.log is None:
            return
        with self.sync_lock:  # the counters move only once the rows are applied
            version = self.log.version()
            if version == self.seen_version and not force:
                return
            self.seen_version = version
            self._sync_items()
            last_event, events = self.log.tail(self.seen_event)
            if events:
                self._apply(events)
            self.seen_event = last_event

    def _sync_items(self) -> None:
        assert self.log is not None
        last_item, items = self.log.items_after(self.seen_item)
        if items:
            self._add_items(items)
        self.seen_item = last_item

    def _apply(self, events: list[Event]) -> None:
        """Apply the ``ok`` events with their trending weights.  Rows held by the burst rule
        (reviewed since or not: a restart replays them as they were at first) take back what
        new users had added to the item; new users' rows of every status feed the rule."""
        e, now = self.engine, time.time()
        ok: list[Event] = []
        weights: list[float] = []
        for event in events:
            if event.item_id not in e.item_code:
                continue
            new = not e.in_bundle(event.user_id)
            received = _arrival(event, now)
            if new:
                self.bursts.observe(event.item_id, event.user_id, received)
            elif event.status == "ok" and self.guard.enabled:
                self.accounts.observe(event.user_id, received)
            if event.status != "ok":
                if event.reason == BURST:
                    e.add_events(ok, weights)  # in order: the credit is taken back after
                    ok, weights = [], []
                    taken = self.weights.revoke(event.item_id, received)
                    e.count_trending([t for _, t in taken], [-w for w, _ in taken])
                continue
            if event.ts is None and event.received is not None:  # the same time on replay
                event = replace(event, ts=event.received)
            w = self.weights.weight(event.user_id, event.item_id, new, received, event.key)
            if new and w > 0:
                self.weights.credit(event.item_id, received, w, event)
            ok.append(event)
            weights.append(w)
        e.add_events(ok, weights)

    def _marked(self, batch: list[Event], now: float) -> list[Event]:
        """``batch`` with the events the burst rules hold marked ``quarantined``."""
        room: dict[str, int] = {}
        out = []
        for ev in batch:
            new = not self.engine.in_bundle(ev.user_id)
            usual = partial(self.engine.trending_weight, ev.item_id)
            if self.bursts.check(ev.item_id, ev.user_id, new, now, usual):
                ev = replace(ev, status="quarantined", reason=BURST)
            elif not new and self.guard.enabled:
                left = room.get(ev.user_id, self.accounts.room(ev.user_id, now))
                room[ev.user_id] = left - 1
                if left <= 0:
                    ev = replace(ev, status="quarantined", reason=ACCOUNT_BURST)
            out.append(ev)
        return out

    def store_events(self, batch: list[Event], key: str | None) -> Counter[str]:
        """Store ``batch`` durably, new users' events on a bursting item quarantined; then
        apply it.  Returns how many new events were stored with each status."""
        assert self.log is not None
        now = time.time()
        stamped = [replace(ev, key=key, received=now) for ev in batch]

        def decide(last: int, others: list[Event]) -> list[Event]:
            """Inside the store's write transaction: what other workers stored meanwhile is
            applied first, so two workers cannot both pass a burst."""
            if others:
                self._sync_items()  # their items first (the store's lock is re-entrant)
                self._apply(others)
            self.seen_event = last
            return self._marked(stamped, now)

        with self.sync_lock:  # decisions in the log's order, after what is applied
            stored = self.log.append_decided(self.seen_event, decide)  # durable before 2xx
        self.sync(force=True)
        return stored


BURST = "many new users on one item in a short window"
ACCOUNT_BURST = "more events for one known user than the per-minute cap"


def _arrival(event: Event, now: float) -> float:
    """When the server got ``event`` (events stored before arrival times were kept: their
    client time, else now)."""
    if event.received is not None:
        return event.received
    return event.ts if event.ts is not None else now
