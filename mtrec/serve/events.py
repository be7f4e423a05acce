"""Durable event log for live traffic: SQLite in WAL mode with ``synchronous=FULL``.

An ``append`` returns only after its transaction is on disk, so an acknowledged event
survives a SIGKILL of the server.  Several server processes may share one file: each
``tail``s the rows it has not seen yet (by row id) before answering, so an event posted to
one worker shows in the next recommendation from any of them.

An event may carry the client's ``event_id`` (unique per API key): one already stored is
not stored again, so a
client that lost the answer to a POST (a timeout, a server crash) can post the same batch
again without doubling anything.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mtrec.serve.records import Event

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    behavior TEXT NOT NULL, scenario TEXT, ts REAL, event_id TEXT);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, text TEXT NOT NULL, category TEXT NOT NULL DEFAULT '',
    id INTEGER NOT NULL, vector BLOB, encoder TEXT);
"""
# columns added since the first release: a store written before gets them on opening
_ADDED = {"events": {"event_id": "TEXT", "key": "TEXT", "received": "REAL",
                     "status": "TEXT NOT NULL DEFAULT 'ok'", "reason": "TEXT"},
          "items": {"vector": "BLOB", "encoder": "TEXT"}}
_COLUMNS = "user_id, item_id, behavior, scenario, ts, event_id, key, received, status, reason"
STATUSES = ("ok", "quarantined", "released", "dropped")


class StoredItem(NamedTuple):
    """An added item as the log keeps it: with its text vector (little-endian float32) and
    the encoder that made it, so other workers and restarts need no encoder pass."""

    item_id: str
    text: str
    category: str = ""
    vector: np.ndarray | None = None
    encoder: str | None = None  # the encoder's ``model_key``


class EventLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False,
                                    isolation_level=None)
        self._lock = threading.RLock()  # append_decided's callback may read
        with self._lock:
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=FULL")
            self._con.executescript(_DDL)
            for table, added in _ADDED.items():
                columns = {r[1] for r in self._con.execute(f"PRAGMA table_info({table})")}
                for column, kind in added.items():
                    if column not in columns:
                        self._con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            # a client's event ids are its key's own: one key cannot shadow another's events
            self._con.execute("DROP INDEX IF EXISTS events_event_id")
            self._con.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_key_event_id "
                              "ON events (coalesce(key, ''), event_id)")  # NULLs never conflict
            self._con.execute("CREATE INDEX IF NOT EXISTS events_status ON events (status)")

    def append(self, events: Sequence[Event]) -> int:
        """Store ``events`` in one transaction (all or none); returns how many were new
        (an event whose ``event_id`` is already stored is skipped)."""
        return sum(self.append_decided(0, lambda _last, _rows: events, tail=False).values())

    def append_decided(self, after: int,
                       decide: Callable[[int, list[Event]], Sequence[Event]],
                       tail: bool = True) -> Counter[str]:
        """Store what ``decide(last, rows)`` returns, called inside the write transaction
        with the rows stored after row ``after`` (by other connections) and the last row id:
        no other writer can store anything between what it saw and what it stores (``tail``
        False: no rows are read).  Returns how many new events were stored per status."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                rows = self._con.execute(f"SELECT id, {_COLUMNS} FROM events WHERE id > ? "
                                         "ORDER BY id", (after,)).fetchall() if tail else []
                last = rows[-1][0] if rows else after
                stored = self._insert(decide(last, [Event(*r[1:]) for r in rows]))
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
        return stored

    def _insert(self, events: Sequence[Event]) -> Counter[str]:
        stored: Counter[str] = Counter()
        sql = (f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT DO NOTHING")
        for e in events:
            before = self._con.total_changes
            self._con.execute(sql, (e.user_id, e.item_id, e.behavior, e.scenario, e.ts,
                                    e.event_id, e.key, e.received, e.status, e.reason))
            stored[e.status] += self._con.total_changes - before
        return stored

    def version(self) -> int:
        """Changes whenever another connection commits (SQLite ``data_version``): a cheap
        test of whether there is anything to tail."""
        with self._lock:
            return int(self._con.execute("PRAGMA data_version").fetchone()[0])

    def tail(self, after: int) -> tuple[int, list[Event]]:
        """Events with row id > ``after`` (any status: apply the ``ok`` ones), and the last
        row id seen."""
        with self._lock:
            rows = self._con.execute(f"SELECT id, {_COLUMNS} FROM events WHERE id > ? "
                                     "ORDER BY id", (after,)).fetchall()
        last = rows[-1][0] if rows else after
        return last, [Event(*r[1:]) for r in rows]

    def count(self, status: str | None = None) -> int:
        """Stored events (with ``status``; None: all of them, a released event once)."""
        where, args = (("WHERE status = ?", (status,)) if status
                       else ("WHERE status != 'released'", ()))
        with self._lock:
            return int(self._con.execute(f"SELECT count(*) FROM events {where}",
                                         args).fetchone()[0])

    def quarantined(self, after: int = 0, limit: int = 100) -> list[tuple[int, Event]]:
        """Quarantined events with row id > ``after``, oldest first, with their row ids."""
        with self._lock:
            rows = self._con.execute(
                f"SELECT id, {_COLUMNS} FROM events WHERE status = 'quarantined' AND id > ? "
                "ORDER BY id LIMIT ?", (after, limit)).fetchall()
        return [(r[0], Event(*r[1:])) for r in rows]

    def review(self, ids: Sequence[int], release: bool) -> int:
        """Release quarantined events (each is appended again as ``ok``, so every worker
        applies it; the original row is marked ``released``) or drop them (kept, marked
        ``dropped``, never applied).  Returns how many were quarantined; others are left."""
        marks = ",".join("?" * len(ids))
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                rows = self._con.execute(
                    f"SELECT id, {_COLUMNS} FROM events WHERE status = 'quarantined' "
                    f"AND id IN ({marks}) ORDER BY id", list(ids)).fetchall()
                found = [r[0] for r in rows]
                if release:  # the copy takes the client's event_id (retries still dedupe)
                    self._con.executemany("UPDATE events SET status = 'released', "
                                          "event_id = NULL WHERE id = ?", [(i,) for i in found])
                    now = time.time()  # applied as if just posted
                    self._insert([replace(Event(*r[1:]), status="ok", received=now)
                                  for r in rows])
                else:
                    self._con.executemany("UPDATE events SET status = 'dropped' WHERE id = ?",
                                          [(i,) for i in found])
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
        return len(found)

    def put_items(self, items: Sequence[StoredItem]) -> None:
        """Remember added items so other workers and a restart add them too."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._put_items(items)
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def _put_items(self, items: Sequence[StoredItem]) -> None:
        nxt = self._con.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()[0]
        self._con.executemany(
            "INSERT INTO items (item_id, text, category, id, vector, encoder) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET "
            "text = excluded.text, category = excluded.category, id = excluded.id, "
            "vector = excluded.vector, encoder = excluded.encoder",
            [(i.item_id, i.text, i.category, nxt + n,
              None if i.vector is None else np.asarray(i.vector, dtype="<f4").tobytes(),
              i.encoder) for n, i in enumerate(items)])

    def items_after(self, after: int) -> tuple[int, list[StoredItem]]:
        """Items stored (or re-described) after row ``after``, and the last row seen."""
        with self._lock:
            rows = self._con.execute(
                "SELECT id, item_id, text, category, vector, encoder FROM items "
                "WHERE id > ? ORDER BY id", (after,)).fetchall()
        return (rows[-1][0] if rows else after), [
            StoredItem(r[1], r[2], r[3],
                       None if r[4] is None else np.frombuffer(r[4], dtype="<f4"), r[5])
            for r in rows]

    def close(self) -> None:
        with self._lock:
            self._con.close()
