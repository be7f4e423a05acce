"""Cross-domain pairs with shared users (DisenCDR's Amazon pairs): ``PAIR.DOMAIN.train.csv``
and ``PAIR.DOMAIN.test.csv`` (``user_id,item_id``) for each of the pair's two domains.

Each domain is a scenario of one platform with its own part of the catalog: item ids are
prefixed with the domain (``phone:14419``) and every event and item carries the domain as its
scenario.  Users are shared across the pair.  There are no timestamps and no order, so the
import is unordered; the split is the source's (``source`` protocol), with a validation part
carved from training: for every user with a test row in a domain, one of that user's training
rows in the same domain, drawn with a fixed seed, becomes ``valid``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import DataFormatError, RowError, RowLog, iter_table, require_id
from mtrec.data.sources.base import LoadContext

VALID_SEED = 0


def load_cross_domain(folder: Path, ctx: LoadContext, pair: str,
                      domains: tuple[str, str]) -> ImportResult:
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    files: list[str] = []
    for d, domain in enumerate(domains):
        paths = {part: folder / f"{pair}.{domain}.{part}.csv" for part in ("train", "test")}
        files += [str(p) for p in paths.values()]
        train = _read(paths["train"], ctx)
        test = _read(paths["test"], ctx)
        _check_held_out(paths["test"], test, train)
        valid = _valid_rows(train, test, VALID_SEED + d)
        for split, rows in (("train", train), ("test", test)):
            for k, (user, item, _) in enumerate(rows):
                part = "valid" if split == "train" and k in valid else split
                item_id = f"{domain}:{item}"
                items.add(item_id, scenario=domain)
                users.add(user)
                events.add(user, item_id, "purchase", scenario=domain, source_split=part)
    notes = [f"{pair}: domains {', '.join(domains)} are scenarios; item ids prefixed with "
             "the domain; valid = one training row per test user and domain (seeded)"]
    return finish(ctx.dataset, events, items, users, ctx.log, files, notes, ordered=False)


def _read(path: Path, ctx: LoadContext) -> list[tuple[str, str, int]]:
    """``(user, item, line)`` rows; a row read twice is quarantined, naming its first line."""
    rows: list[tuple[str, str, int]] = []
    seen: dict[tuple[str, str], int] = {}
    log: RowLog = ctx.log
    for row in iter_table(path, log, sep=",", required=("user_id", "item_id"),
                          progress=ctx.progress):
        with log.row(path, row.line, row.raw):
            pair = (require_id(row["user_id"], "user_id"), require_id(row["item_id"], "item_id"))
            if pair in seen:
                raise RowError(f"duplicate pair {pair}: first on line {seen[pair]}")
            seen[pair] = row.line
            rows.append((*pair, row.line))
    return rows


def _check_held_out(path: Path, test: list[tuple[str, str, int]],
                    train: list[tuple[str, str, int]]) -> None:
    """A held-out pair that is also a training pair would leak: refuse it, naming the line."""
    seen = {(u, i) for u, i, _ in train}
    for user, item, line in test:
        if (user, item) in seen:
            raise DataFormatError(f"{path}:{line}: held-out pair ({user}, {item}) is also "
                                  "in training")


def _valid_rows(train: list[tuple[str, str, int]], test: list[tuple[str, str, int]],
                seed: int) -> set[int]:
    """Indices into ``train``: one row per user with a test row and >= 2 training rows."""
    by_user: dict[str, list[int]] = {}
    for k, (user, _, _) in enumerate(train):
        by_user.setdefault(user, []).append(k)
    rng = np.random.default_rng(seed)
    chosen = set()
    for user in sorted({u for u, _, _ in test}):
        rows = by_user.get(user, [])
        if len(rows) >= 2:
            chosen.add(rows[int(rng.integers(len(rows)))])
    return chosen
