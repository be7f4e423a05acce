"""Synthetic shop logs with a planted answer for the simulator and the policy.

Users fall in three taste groups and take items of their group's third of the catalog (10 %
of their picks are off-taste); each taken item is bought with its own planted chance
(``0.1 + 0.5 * (item % 2)``), and a user who bought something comes back the next day with
probability 0.7, otherwise 0.25.  A fitted simulator must find a positive effect of a
satisfying session on returning, and a taste structure in the responses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mtrec.data.builder import EventsBuilder, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import RowLog
from mtrec.data.store import Store
from mtrec.policy.labels import DAY

START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


def shop_rows(n_users: int = 150, n_items: int = 30, days: int = 40,
              seed: int = 0) -> list[tuple[str, str, str, int]]:
    """(user, item, behaviour, unix seconds) rows."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, str, int]] = []
    third = n_items // 3
    for u in range(n_users):
        group, active, day = u % 3, True, int(rng.integers(0, 5))
        while day < days:
            bought = False
            if active:
                for _ in range(int(rng.integers(1, 4))):
                    off = rng.random() < 0.1
                    item = int(rng.integers(0, n_items)) if off else \
                        group * third + int(rng.integers(0, third))
                    ts = START + day * DAY + int(rng.integers(0, DAY // 2))
                    rows.append((f"u{u}", f"i{item}", "view", ts))
                    if rng.random() < 0.1 + 0.5 * (item % 2):
                        rows.append((f"u{u}", f"i{item}", "purchase", ts + 60))
                        bought = True
            active = rng.random() < (0.7 if bought else 0.25)
            day += 1
    return rows


def shop_store(folder: Path, rows: list[tuple[str, str, str, int]] | None = None,
               name: str = "shop") -> Path:
    rows = shop_rows() if rows is None else rows
    events, items, users = EventsBuilder(), ItemsBuilder(), UsersBuilder()
    for item in sorted({r[1] for r in rows}):
        items.add(item, title=item)
    for user in sorted({r[0] for r in rows}):
        users.add(user)
    for user, item, behavior, ts in rows:  # (ts < 0: no timestamp)
        events.add(user, item, behavior, ts=datetime.fromtimestamp(ts, UTC).replace(
            tzinfo=None) if ts >= 0 else None)
    path = folder / f"{name}.duckdb"
    Store.write_import(path, finish(name, events, items, users, RowLog(), files=[]))
    return path
