"""Pair files, one per behaviour: ``user item`` per line (JData's ``buy.txt``, ``cart.txt``,
``collect.txt``), held-out ``validation.txt`` / ``test.txt`` of the target behaviour, and
``count.txt`` (``{"user": N, "item": M}``) declaring ids ``1..N`` and ``1..M``.

There are no timestamps: order is kept by ``seq`` (file order) and the split is the
source's own.  A pair whose id lies outside the declared range is quarantined.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import DataFormatError, RowError, RowLog, iter_lines
from mtrec.data.sources.base import LoadContext

JDATA_FILES = (
    ("buy.txt", "purchase", "train"),
    ("cart.txt", "cart", "train"),
    ("collect.txt", "collect", "train"),
    ("validation.txt", "purchase", "valid"),
    ("test.txt", "purchase", "test"),
)


def load_pairs(folder: Path, ctx: LoadContext,
               layout: tuple[tuple[str, str, str], ...] = JDATA_FILES) -> ImportResult:
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    n_users, n_items = _read_counts(folder / "count.txt")
    for u in range(1, n_users + 1):
        users.add(str(u))
    for i in range(1, n_items + 1):
        items.add(str(i))
    files = [str(folder / "count.txt")]
    for name, behavior, split in layout:
        path = folder / name
        files.append(str(path))
        for user, item in _read_pairs(path, ctx.log, ctx, n_users, n_items):
            events.add(user, item, behavior, source_split=split)
    return finish(ctx.dataset, events, items, users, ctx.log, files, ordered=False)


def _read_counts(path: Path) -> tuple[int, int]:
    try:
        counts = json.loads(path.read_text(encoding="utf-8"))
        return int(counts["user"]), int(counts["item"])
    except FileNotFoundError:
        raise DataFormatError(f"{path}:0: file not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataFormatError(
            f'{path}:1: expected {{"user": N, "item": M}}, got error {exc}') from exc


def _read_pairs(path: Path, log: RowLog, ctx: LoadContext, n_users: int, n_items: int
                ) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line, text in iter_lines(path, log, progress=ctx.progress):
        with log.row(path, line, text):
            fields = text.split()
            if len(fields) != 2:
                raise RowError(f"wrong column count: expected 2 fields, found {len(fields)}")
            user, item = (_in_range(v, n, name) for v, n, name in
                          ((fields[0], n_users, "user"), (fields[1], n_items, "item")))
            out.append((user, item))
    return out


def _in_range(value: str, limit: int, what: str) -> str:
    if not (value.isascii() and value.isdigit()):
        raise RowError(f"non-numeric {what} id: {value!r}")
    if not 1 <= int(value) <= limit:
        raise RowError(f"unknown {what} {value!r} (count.txt declares 1..{limit})")
    return str(int(value))
