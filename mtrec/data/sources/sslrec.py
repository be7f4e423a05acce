"""SSLRec's multi-behaviour subsets (RetailRocket, Taobao UserBehavior) as csv files.

SSLRec (HKUDS/SSLRec, ``datasets/multi_behavior``) ships one scipy matrix per behaviour,
holding the unix time of each (user, item) pair, and a test matrix of one held-out purchase
per user.  Converted to csv, a folder holds:

- ``events.csv`` with header ``user_id,item_id,behavior,ts``: one row per (user, item,
  behaviour) with its time in unix seconds (repeats of a pair are collapsed by the source);
- ``test.csv`` with header ``user_id,item_id,behavior``: the held-out purchase, no time.

``events.csv`` rows become ``train`` events with their timestamp, ordered by time (ties keep
file order); ``test.csv`` rows become ``test`` events without one, after every training
event, so the ``source`` protocol keeps the shipped held-out purchase.  Ids are kept as
written; items are declared from both files and carry no text (ID-only).  A row with an
unknown behaviour, a bad time or a missing id is quarantined with its file and line, as is
a second ``test.csv`` row for the same user.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import DataFormatError, Row, RowError, iter_table, require_id
from mtrec.data.sources.base import LoadContext, unix_time

EVENT_COLUMNS = ("user_id", "item_id", "behavior", "ts")
TEST_COLUMNS = ("user_id", "item_id", "behavior")
RETAILROCKET = ("view", "cart", "purchase")
TAOBAO = ("collect", "cart", "purchase")


def load_sslrec(folder: Path, ctx: LoadContext, behaviors: Sequence[str]) -> ImportResult:
    """Read ``events.csv`` and ``test.csv``; ``behaviors`` are the ones the dataset has."""
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    events_path, test_path = folder / "events.csv", folder / "test.csv"
    train: list[tuple[datetime, str, str, str]] = []
    for row in _rows(events_path, ctx, EVENT_COLUMNS):
        with ctx.log.row(events_path, row.line, row.raw):
            user, item = _ids(row)
            behavior = _behavior(row, behaviors)
            train.append((unix_time(row["ts"], "ts"), user, item, behavior))
    train.sort(key=lambda r: r[0])  # stable: ties keep file order
    for ts, user, item, behavior in train:
        _declare(users, items, user, item)
        events.add(user, item, behavior, ts=ts, source_split="train")
    trained_users, trained_items = set(users.rows), set(items.rows)
    held: set[str] = set()
    for row in _rows(test_path, ctx, TEST_COLUMNS):
        with ctx.log.row(test_path, row.line, row.raw):
            user, item = _ids(row)
            behavior = _behavior(row, behaviors)
            if user in held:
                raise RowError(f"duplicate user {user!r} (one held-out row per user)")
            held.add(user)
            _declare(users, items, user, item)
            events.add(user, item, behavior, source_split="test")
    if not held:
        raise DataFormatError(f"{test_path}:1: no usable rows")
    files = [str(events_path), str(test_path)]
    return finish(ctx.dataset, events, items, users, ctx.log, files,
                  _notes(events, len(train), trained_users, trained_items))


def _rows(path: Path, ctx: LoadContext, columns: tuple[str, ...]) -> Iterator[Row]:
    """The rows of a comma-separated file whose header must name ``columns``."""
    rows = iter_table(path, ctx.log, sep=",", required=columns, progress=ctx.progress)
    try:
        first = next(rows, None)  # reads and checks the header
    except DataFormatError as exc:
        if not str(exc).startswith(f"{path}:1:"):  # a strict-mode row error, not the header
            raise
        raise DataFormatError(f"{exc} (expected header: {','.join(columns)})") from None
    if first is not None:
        yield first
        yield from rows


def _ids(row: Row) -> tuple[str, str]:
    return require_id(row["user_id"], "user_id"), require_id(row["item_id"], "item_id")


def _behavior(row: Row, behaviors: Sequence[str]) -> str:
    value = row["behavior"]
    if value not in behaviors:
        raise RowError(f"unknown behaviour {value!r} (expected one of {', '.join(behaviors)})")
    return value


def _declare(users: UsersBuilder, items: ItemsBuilder, user: str, item: str) -> None:
    if user not in users:
        users.add(user)
    if item not in items:
        items.add(item)


def _notes(events: EventsBuilder, n_train: int, trained_users: set[str],
           trained_items: set[str]) -> list[str]:
    """What the held-out rows say about the training events: cold items and users."""
    held = list(zip(events.cols["user_id"][n_train:], events.cols["item_id"][n_train:],
                    strict=True))
    notes = ["ID-only: no item text; test.csv rows carry no timestamp (they follow every "
             "training event of their user in seq order)"]
    cold_items = sum(item not in trained_items for _, item in held)
    if cold_items:
        notes.append(f"{cold_items} of {len(held)} test rows hold an item with no training "
                     "event (cold items)")
    cold_users = sum(user not in trained_users for user, _ in held)
    if cold_users:
        notes.append(f"{cold_users} test users have no training event")
    return notes
