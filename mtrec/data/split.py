"""Named split protocols and the leakage rules each one guarantees.

Every protocol assigns each kept event to ``train``, ``valid`` or ``test`` (events removed by
cleaning are ``dropped``).  "Order" is per user: by timestamp when the dataset has one,
else by ``seq`` (the source's order); ties on timestamp are broken by ``seq``.

- ``loo``: leave-one-out (P5/TIGER).  For each user with >= 3 events the last is test and
  the second to last valid; with 2 events the last is test; with 1 it is train.  Consecutive
  events on the same item with changing behaviours (a view -> click -> purchase funnel) count
  as one and move together.  Rule: a
  user's valid/test events come after all of that user's training events.
- ``temporal``: a global time cut.  The latest ``test_frac`` of events (by time) are test,
  the ``valid_frac`` before them valid.  Rule: every training event is earlier than every
  valid event, which is earlier than every test event.  Needs timestamps.
- ``ratio``: per user, the last ``test_frac`` of the user's events are test and the
  ``valid_frac`` before them valid.  Rule: as ``loo``.
- ``cold-item``: a random ``valid_frac`` / ``test_frac`` of the items are held out; all
  their events are valid / test.  Rule: no held-out item occurs in training.
- ``cold-user``: the same over users.  Rule: no held-out user occurs in training.
- ``pair``: a random ``valid_frac`` / ``test_frac`` of the (user, item) pairs are held out,
  with all their events (for unordered multi-behaviour data such as JData, where the
  question is which behaviours a pair gets).  Rule: no pair is in two parts.
- ``source``: the dataset's own split, as shipped.  Rule: whatever the source guarantees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtrec.data.clean import CleanConfig, EventArrays, clean

PROTOCOLS = ("loo", "temporal", "ratio", "cold-item", "cold-user", "pair", "source")
PARTS = ("train", "valid", "test", "dropped")
TRAIN, VALID, TEST, DROPPED = range(4)


class SplitError(ValueError):
    """A protocol cannot be applied to this dataset, or a split leaks."""


@dataclass(frozen=True)
class SplitConfig:
    protocol: str = "loo"
    valid_frac: float = 0.1
    test_frac: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SplitError(f"unknown split protocol {self.protocol!r}; known: {PROTOCOLS}")
        for name in ("valid_frac", "test_frac"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise SplitError(f"{name} must be in [0, 1), got {value}")
        if self.valid_frac + self.test_frac >= 1.0:
            raise SplitError("valid_frac + test_frac must be below 1")


def split_events(
    events: EventArrays, config: SplitConfig, clean_config: CleanConfig | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Assign every event a part code (see :data:`PARTS`); return it with a report."""
    if config.protocol in ("loo", "ratio") and not (events.ordered or events.has_time):
        raise SplitError(
            f"{config.protocol}: these events have no order within a user (no timestamps, and "
            "rows come from separate behaviour or impression files); use --protocol source, "
            "cold-item or cold-user")
    keep, clean_report = clean(events, clean_config or CleanConfig())
    if not keep.any():
        raise SplitError(f"no events left to split (dropped by cleaning: "
                         f"{clean_report.dropped or 'none; the dataset is empty'})")
    parts = np.full(len(events), DROPPED, dtype=np.int8)
    idx = np.flatnonzero(keep)
    sub = _subset(events, idx)
    parts[idx] = _PROTOCOL_FUNCS[config.protocol](sub, config)
    _check_parts(parts, config)
    check_no_leakage(events, parts, config.protocol)
    report = {
        "protocol": config.protocol,
        "config": config.__dict__,
        "clean": {"kept": clean_report.kept, "dropped": clean_report.dropped},
        "parts": part_counts(events, parts),
    }
    return parts, report


def _check_parts(parts: np.ndarray, config: SplitConfig) -> None:
    """Refuse a split whose training part, or a part asked for, came out empty."""
    counts = np.bincount(parts, minlength=len(PARTS))
    # loo and source may legitimately have no valid part (users with 2 events; no valid file).
    needed = ["train", "test"] if config.protocol in ("loo", "source") else ["train"] + [
        p for p, f in (("valid", config.valid_frac), ("test", config.test_frac)) if f > 0]
    empty = [p for p in needed if counts[PARTS.index(p)] == 0]
    if empty:
        shares = {p: int(counts[k]) for k, p in enumerate(PARTS)}
        raise SplitError(f"{config.protocol}: the {' and '.join(empty)} part is empty "
                         f"(events per part: {shares}); ties at a time cut or too few "
                         "users/items for these fractions")


def part_counts(events: EventArrays, parts: np.ndarray) -> dict[str, dict[str, int]]:
    out = {}
    for code, name in enumerate(PARTS):
        mask = parts == code
        out[name] = {
            "events": int(mask.sum()),
            "users": len(np.unique(events.user[mask])),
            "items": len(np.unique(events.item[mask])),
        }
    return out


def order(events: EventArrays) -> np.ndarray:
    """Indices sorting events by user, then time (or seq when untimed), then seq."""
    time = events.ts if events.has_time else events.seq
    return np.lexsort((events.seq, time, events.user))


def _positions(events: EventArrays) -> tuple[np.ndarray, np.ndarray]:
    """For each event: the 0-based position of its *run* in its user's ordered history, and
    the user's number of runs.  A run is consecutive events of one user on one item with
    changing behaviours (a view, click, cart and purchase of the same item), so a funnel is
    held out whole; a repeated behaviour (buying the item again) starts a new run."""
    idx = order(events)
    users, items, acts = events.user[idx], events.item[idx], events.behavior[idx]
    new_run = np.ones(len(idx), dtype=bool)
    new_run[1:] = ((users[1:] != users[:-1]) | (items[1:] != items[:-1])
                   | (acts[1:] == acts[:-1]))
    run = np.cumsum(new_run) - 1  # global run index in sorted order
    size = events.user.max() + 1 if len(idx) else 0
    first_run = np.full(size, np.iinfo(np.int64).max)
    np.minimum.at(first_run, users, run)
    n_runs = np.bincount(users[new_run], minlength=size)
    pos = np.empty(len(idx), dtype=np.int64)
    pos[idx] = run - first_run[users]
    return pos, n_runs[events.user]


def _loo(events: EventArrays, config: SplitConfig) -> np.ndarray:
    pos, n = _positions(events)
    parts = np.full(len(events), TRAIN, dtype=np.int8)
    parts[(pos == n - 1) & (n >= 2)] = TEST
    parts[(pos == n - 2) & (n >= 3)] = VALID
    return parts


def _ratio(events: EventArrays, config: SplitConfig) -> np.ndarray:
    pos, n = _positions(events)
    n_test = np.floor(n * config.test_frac + 0.5).astype(np.int64)
    n_valid = np.floor(n * config.valid_frac + 0.5).astype(np.int64)
    parts = np.full(len(events), TRAIN, dtype=np.int8)
    parts[pos >= n - n_test - n_valid] = VALID
    parts[pos >= n - n_test] = TEST
    return parts


def _temporal(events: EventArrays, config: SplitConfig) -> np.ndarray:
    if not events.has_time:
        raise SplitError("the temporal protocol needs a timestamp on every event; "
                         "this dataset has none (use loo or source)")
    parts = np.full(len(events), TRAIN, dtype=np.int8)
    # Events tied with a cut go to the later part, so every training event stays earlier.
    if config.valid_frac > 0:
        cut = np.quantile(events.ts, 1.0 - config.test_frac - config.valid_frac,
                          method="higher")
        parts[events.ts >= cut] = VALID
    if config.test_frac > 0:
        parts[events.ts >= np.quantile(events.ts, 1.0 - config.test_frac, method="higher")] = TEST
    return parts


def _cold(codes: np.ndarray, config: SplitConfig) -> np.ndarray:
    present = np.unique(codes)
    rng = np.random.default_rng(config.seed)
    shuffled = rng.permutation(present)
    n_test, n_valid = (max(1, round(len(present) * f)) if f > 0 else 0
                       for f in (config.test_frac, config.valid_frac))
    if n_test + n_valid >= len(present):
        raise SplitError(f"{config.protocol}: only {len(present)} ids; cannot hold out "
                         f"{n_test} + {n_valid} and keep any for training")
    parts = np.full(len(codes), TRAIN, dtype=np.int8)
    parts[np.isin(codes, shuffled[:n_test])] = TEST
    parts[np.isin(codes, shuffled[n_test:n_test + n_valid])] = VALID
    return parts


def _pair(events: EventArrays, config: SplitConfig) -> np.ndarray:
    keys = events.user * (int(events.item.max()) + 1 if len(events) else 1) + events.item
    pairs, inverse = np.unique(keys, return_inverse=True)
    draw = np.random.default_rng(config.seed).random(len(pairs))[inverse.ravel()]
    parts = np.full(len(events), TRAIN, dtype=np.int8)
    parts[draw < config.test_frac + config.valid_frac] = VALID
    parts[draw < config.test_frac] = TEST
    return parts


def _source(events: EventArrays, config: SplitConfig) -> np.ndarray:
    lookup = {"train": TRAIN, "valid": VALID, "test": TEST}
    missing = sum(1 for s in events.source_split if s is None)
    if missing == len(events):
        raise SplitError("this dataset ships no split of its own; choose another protocol")
    if missing:
        raise SplitError(f"{missing} events have no source split; the source split is partial")
    return np.array([lookup[s] for s in events.source_split], dtype=np.int8)


_PROTOCOL_FUNCS = {
    "loo": _loo,
    "ratio": _ratio,
    "temporal": _temporal,
    "cold-item": lambda ev, cfg: _cold(ev.item, cfg),
    "cold-user": lambda ev, cfg: _cold(ev.user, cfg),
    "pair": _pair,
    "source": _source,
}


def check_no_leakage(events: EventArrays, parts: np.ndarray, protocol: str) -> None:
    """Raise :class:`SplitError` when ``parts`` breaks the rule of ``protocol``."""
    train = parts == TRAIN
    held = (parts == VALID) | (parts == TEST)
    if protocol in ("loo", "ratio"):
        time = events.ts if events.has_time else events.seq
        key = time * (len(events) + 1) + events.seq if events.has_time else time
        size = events.user.max() + 1 if len(events) else 0
        last_train = np.full(size, np.iinfo(np.int64).min)
        np.maximum.at(last_train, events.user[train], key[train])
        first_held = np.full(size, np.iinfo(np.int64).max)
        np.minimum.at(first_held, events.user[held], key[held])
        bad = np.flatnonzero(last_train > first_held)
        if len(bad):
            raise SplitError(f"{protocol}: user {events.user_ids[bad[0]]!r} has a training "
                             "event after a held-out one")
    elif protocol == "temporal":
        if train.any() and held.any() and events.ts[train].max() >= events.ts[held].min():
            raise SplitError("temporal: a training event is not earlier than every held-out one")
    elif protocol == "pair":
        keys = events.user * (int(events.item.max()) + 1) + events.item
        leaked = np.intersect1d(keys[train], keys[held])
        if len(leaked):
            raise SplitError("pair: a (user, item) pair is both held out and in training")
    elif protocol in ("cold-item", "cold-user"):
        codes, names = ((events.item, events.item_ids) if protocol == "cold-item"
                        else (events.user, events.user_ids))
        leaked = np.intersect1d(codes[train], codes[held])
        if len(leaked):
            raise SplitError(f"{protocol}: {names[leaked[0]]!r} is both held out and in training")


def _subset(events: EventArrays, idx: np.ndarray) -> EventArrays:
    return EventArrays(
        seq=events.seq[idx], user=events.user[idx], item=events.item[idx],
        behavior=events.behavior[idx], ts=events.ts[idx],
        source_split=events.source_split[idx], user_ids=events.user_ids,
        item_ids=events.item_ids,
    )
