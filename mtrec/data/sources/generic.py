"""Bring your own data: CSV/TSV/Parquet files read through a :class:`ColumnMapping`
(see :mod:`mtrec.data.sources.mapping` for its keys, defaults and the order rule)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import DataFormatError, Row, RowError, RowLog, iter_table, parse_float
from mtrec.data.schema import BEHAVIORS, DEFAULT_SCENARIO, SOURCE_SPLITS
from mtrec.data.sources.base import LoadContext
from mtrec.data.sources.mapping import ITEM_FIELDS, ColumnMapping

__all__ = ["ITEM_FIELDS", "ColumnMapping", "load_generic", "parse_time"]


def load_generic(mapping: ColumnMapping, ctx: LoadContext) -> ImportResult:
    mapping = mapping.resolved()
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    files = [str(Path(mapping.events))]
    if mapping.items:
        files.append(str(Path(mapping.items)))
        _read_items(mapping, ctx, items)
    rows = sorted(_event_rows(mapping, ctx, items), key=lambda r: r[0])
    for _, user, (item, behavior, value), extra in rows:
        users.add(user)
        events.add(user, item, behavior, value, **extra)
    notes = []
    if mapping.ts is None and mapping.seq is None:
        notes.append(f"{Path(mapping.events).name} has no timestamp (ts) or order (seq) "
                     "column: events are ordered by their row order in the file")
    return finish(ctx.dataset, events, items, users, ctx.log, files, notes)


EventRow = tuple[float, str, tuple[str, str, float], dict[str, Any]]


def _event_rows(mapping: ColumnMapping, ctx: LoadContext, items: ItemsBuilder
                ) -> Iterator[EventRow]:
    """Each good row as ``(order key, user, (item, behaviour, value), keyword fields)``;
    the key is the ``seq`` value, else the row number (ties keep file order)."""
    assert mapping.user_id and mapping.item_id  # resolved() guarantees both
    used = {c for c in (mapping.user_id, mapping.item_id, mapping.behavior, mapping.value,
                        mapping.ts, mapping.seq, mapping.scenario, mapping.split) if c}
    path = Path(mapping.events)
    for row in _rows(path, mapping.separator(path), ctx, required=sorted(used)):
        with ctx.log.row(path, row.line, row.raw):
            user, item = row[mapping.user_id], row[mapping.item_id]
            if not user or not item:
                raise RowError(f"missing {mapping.user_id if not user else mapping.item_id}")
            if items and item not in items:
                raise RowError(f"unknown item {item!r} (not in {Path(mapping.items or '').name})")
            context = ({k: row[k] for k in row.index if k not in used}
                       if mapping.keep_extra_columns else None)
            behavior = _behavior(row, mapping)
            value = parse_float(row[mapping.value], mapping.value) if mapping.value else 1.0
            ts = parse_time(row[mapping.ts], mapping.ts) if mapping.ts else None
            order = parse_float(row[mapping.seq], mapping.seq) if mapping.seq else row.line
            extra = {"ts": ts, "source_split": _split(row, mapping), "context": context,
                     "scenario": (row[mapping.scenario] if mapping.scenario else "")
                     or DEFAULT_SCENARIO}
            yield order, user, (item, behavior, value), extra


def _read_items(mapping: ColumnMapping, ctx: LoadContext, items: ItemsBuilder) -> None:
    cols = dict(mapping.item_columns)  # resolved: holds item_id
    path = Path(mapping.items or "")
    for row in _rows(path, mapping.separator(path), ctx, required=sorted(set(cols.values()))):
        with ctx.log.row(path, row.line, row.raw):
            values: dict[str, Any] = {k: row[c] or None for k, c in cols.items()}
            item = values.pop("item_id")
            if not item:
                raise RowError(f"missing {cols['item_id']}")
            if item in items:
                raise RowError(f"duplicate item {item!r}")
            if values.get("price") is not None:
                try:
                    values["price"] = parse_float(values["price"], cols["price"])
                except RowError as exc:  # keep the item; only the price is lost
                    ctx.log.bad(path, row.line, f"{exc} (item kept without a price)", row.raw)
                    values["price"] = None
            items.add(item, **values)


def _rows(path: Path, sep: str, ctx: LoadContext, required: list[str]) -> Iterator[Row]:
    if path.suffix == ".parquet":
        yield from _parquet_rows(path, ctx.log, required)
        return
    yield from iter_table(path, ctx.log, sep=sep, required=required, progress=ctx.progress,
                          quoted=True)


def _parquet_rows(path: Path, log: RowLog, required: list[str]) -> Iterator[Row]:
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}:0: cannot read parquet: {exc}") from exc
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DataFormatError(f"{path}:1: missing column(s) {missing}; "
                              f"found {table.column_names}")
    index = {n: i for i, n in enumerate(table.column_names)}
    for number, record in enumerate(table.to_pylist(), start=1):
        log.rows_read[str(path)] += 1
        values = ["" if v is None else str(v) for v in record.values()]
        yield Row(number, values, json.dumps(record, default=str)[:500], index)


def _behavior(row: Row, mapping: ColumnMapping) -> str:
    if not mapping.behavior:
        return mapping.default_behavior or "click"
    raw = row[mapping.behavior]
    value = mapping.behavior_values.get(raw, raw)
    if value not in BEHAVIORS:
        raise RowError(f"unknown behaviour {raw!r} in column {mapping.behavior!r}: map it "
                       f"with --map behavior_value={raw}:CANON, CANON one of "
                       f"{', '.join(BEHAVIORS)}")
    return value


def _split(row: Row, mapping: ColumnMapping) -> str | None:
    if not mapping.split:
        return None
    value = {"val": "valid", "dev": "valid", "validation": "valid"}.get(
        row[mapping.split], row[mapping.split])
    if value not in SOURCE_SPLITS:
        raise RowError(f"split {row[mapping.split]!r} is not one of {SOURCE_SPLITS}")
    return value


def _parse_iso(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RowError(f"unreadable {name}: {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    if parsed.year < 1970:  # negative epochs would read as "no timestamp"
        raise RowError(f"{name} out of range: {value!r}")
    return parsed


def parse_time(value: str, name: str) -> datetime:
    """Unix seconds (or milliseconds) or an ISO 8601 string, as naive UTC.

    >>> parse_time("2014-07-01T12:00:00", "ts")
    datetime.datetime(2014, 7, 1, 12, 0)
    >>> parse_time("1404216000000", "ts")
    datetime.datetime(2014, 7, 1, 12, 0)
    """
    try:
        seconds = float(value)
    except ValueError:
        return _parse_iso(value, name)
    if seconds > 1e11:
        seconds /= 1000.0
    if not 0 <= seconds < 4e9:  # also rejects nan
        raise RowError(f"{name} out of range: {value!r}")
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
