"""Cleaning before a split: exact-duplicate removal, behaviour filter and k-core filtering.

Cleaning never deletes stored rows: it returns a mask of the events to keep and a report
that counts every dropped event by reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtrec.data.schema import BEHAVIORS
from mtrec.data.store import Store


@dataclass(frozen=True)
class EventArrays:
    """The events of a store as dense integer codes, ordered by ``seq``.

    ``ts`` is unix seconds with ``-1`` where the timestamp is missing.
    """

    seq: np.ndarray
    user: np.ndarray
    item: np.ndarray
    behavior: np.ndarray  # index into BEHAVIORS
    ts: np.ndarray
    source_split: np.ndarray  # object array of 'train'/'valid'/'test'/None
    user_ids: np.ndarray  # code -> user_id
    item_ids: np.ndarray  # code -> item_id
    ordered: bool = True  # False: no order within a user beyond timestamps (see ImportResult)

    @classmethod
    def from_store(cls, store: Store) -> EventArrays:
        rows = store.con.sql(
            """
            SELECT seq, dense_rank() OVER (ORDER BY user_id) - 1 AS u,
                   dense_rank() OVER (ORDER BY item_id) - 1 AS i, behavior,
                   coalesce(epoch(ts)::BIGINT, -1) AS t, source_split, user_id, item_id
            FROM events ORDER BY seq
            """
        ).to_arrow_table()
        col = {n: rows.column(n).to_numpy(zero_copy_only=False) for n in rows.column_names}
        user, item = col["u"].astype(np.int64), col["i"].astype(np.int64)
        user_ids = np.empty(user.max() + 1 if len(user) else 0, dtype=object)
        user_ids[user] = col["user_id"]
        item_ids = np.empty(item.max() + 1 if len(item) else 0, dtype=object)
        item_ids[item] = col["item_id"]
        lookup = {b: k for k, b in enumerate(BEHAVIORS)}
        return cls(
            seq=col["seq"].astype(np.int64), user=user, item=item,
            behavior=np.array([lookup[b] for b in col["behavior"]], dtype=np.int16),
            ts=col["t"].astype(np.int64), source_split=col["source_split"],
            user_ids=user_ids, item_ids=item_ids,
            ordered=bool(store.get_meta("import", {}).get("ordered", True)),
        )

    def __len__(self) -> int:
        return len(self.seq)

    @property
    def has_time(self) -> bool:
        return bool(len(self.ts)) and bool((self.ts >= 0).all())


@dataclass(frozen=True)
class CleanConfig:
    """``dedupe`` drops exact repeats of (user, item, behaviour, ts) among timestamped
    events; ``kcore`` keeps users and items with at least that many events (0 = off)."""

    dedupe: bool = True
    kcore: int = 0
    behaviors: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kcore < 0:
            raise ValueError(f"kcore must be >= 0, got {self.kcore}")
        unknown = set(self.behaviors or ()) - set(BEHAVIORS)
        if unknown:
            raise ValueError(f"unknown behaviour(s) {sorted(unknown)}; known: {BEHAVIORS}")


@dataclass(frozen=True)
class CleanReport:
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)


def clean(events: EventArrays, config: CleanConfig) -> tuple[np.ndarray, CleanReport]:
    """Return the keep-mask over ``events`` and the counts dropped per reason.

    >>> ev = EventArrays(seq=np.arange(4), user=np.array([0, 0, 0, 1]),
    ...     item=np.array([0, 0, 1, 1]), behavior=np.zeros(4, np.int16),
    ...     ts=np.array([5, 5, 6, 7]), source_split=np.full(4, None),
    ...     user_ids=np.array(["a", "b"]), item_ids=np.array(["x", "y"]))
    >>> mask, report = clean(ev, CleanConfig())
    >>> mask.tolist(), report.dropped
    ([True, False, True, True], {'duplicate': 1})
    """
    keep = np.ones(len(events), dtype=bool)
    dropped: dict[str, int] = {}
    if config.behaviors is not None:
        wanted = [BEHAVIORS.index(b) for b in config.behaviors]
        mask = np.isin(events.behavior, wanted)
        dropped["behavior"] = int((~mask).sum())
        keep &= mask
    if config.dedupe:
        dup = _duplicates(events) & keep
        dropped["duplicate"] = int(dup.sum())
        keep &= ~dup
    if config.kcore > 0:
        before = int(keep.sum())
        keep &= kcore_mask(events.user, events.item, keep, config.kcore)
        dropped["kcore"] = before - int(keep.sum())
    return keep, CleanReport(kept=int(keep.sum()), dropped=dropped)


def _duplicates(events: EventArrays) -> np.ndarray:
    """Later copies of an identical timestamped (user, item, behaviour, ts) event."""
    timed = events.ts >= 0
    keys = np.stack([events.user, events.item, events.behavior.astype(np.int64), events.ts], 1)
    _, first = np.unique(keys, axis=0, return_index=True)
    dup = np.ones(len(events), dtype=bool)
    dup[first] = False
    return dup & timed


def kcore_mask(user: np.ndarray, item: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Iteratively drop users and items with fewer than ``k`` kept events.

    >>> users, items = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 2])
    >>> kcore_mask(users, items, np.ones(5, bool), 2).tolist()
    [True, True, True, True, False]
    """
    keep = keep.copy()
    while True:
        u_count = np.bincount(user[keep], minlength=user.max() + 1 if len(user) else 0)
        i_count = np.bincount(item[keep], minlength=item.max() + 1 if len(item) else 0)
        ok = keep & (u_count[user] >= k) & (i_count[item] >= k)
        if (ok == keep).all():
            return keep
        keep = ok
