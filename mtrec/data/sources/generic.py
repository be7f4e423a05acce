"""Bring your own data: CSV/TSV/Parquet files plus a column mapping.

The mapping is a JSON or TOML file (or the same keys given as CLI flags)::

    {"events": "events.csv", "user_id": "uid", "item_id": "sku",
     "behavior": "action", "behavior_values": {"pv": "view", "buy": "purchase"},
     "ts": "time", "value": "rating",
     "items": "items.csv", "item_columns": {"item_id": "sku", "title": "name"}}

Only ``events``, ``user_id`` and ``item_id`` are required.  Unknown keys are errors.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import DataFormatError, Row, RowError, RowLog, iter_table, parse_float
from mtrec.data.schema import BEHAVIORS, DEFAULT_SCENARIO, SOURCE_SPLITS
from mtrec.data.sources.base import LoadContext

ITEM_FIELDS = ("item_id", "title", "text", "category", "brand", "price", "scenario")


@dataclass(frozen=True)
class ColumnMapping:
    """Where each canonical field comes from in the user's files."""

    events: str
    user_id: str
    item_id: str
    behavior: str | None = None
    default_behavior: str = "click"
    behavior_values: dict[str, str] = field(default_factory=dict)
    value: str | None = None
    ts: str | None = None
    scenario: str | None = None
    split: str | None = None
    sep: str | None = None
    keep_extra_columns: bool = False
    items: str | None = None
    item_columns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "mapping") -> ColumnMapping:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataFormatError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        missing = [k for k in ("events", "user_id", "item_id") if k not in data]
        if missing:
            raise DataFormatError(f"{where}: missing required key(s) {missing}")
        for key, value in data.items():
            _check_type(key, value, where)
        mapping = cls(**data)
        for raw, canon in {**mapping.behavior_values,
                           "<default>": mapping.default_behavior}.items():
            if canon not in BEHAVIORS:
                raise DataFormatError(
                    f"{where}: behaviour {raw!r} maps to unknown {canon!r}; known: {BEHAVIORS}")
        bad = sorted(set(mapping.item_columns) - set(ITEM_FIELDS))
        if bad:
            raise DataFormatError(f"{where}: unknown item field(s) {bad}; known: {ITEM_FIELDS}")
        return mapping

    @classmethod
    def from_file(cls, path: str | Path) -> ColumnMapping:
        """Read a JSON or TOML mapping; relative file names are relative to it."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}:1: cannot read mapping: {exc}") from exc
        mapping = cls.from_dict(data, str(path))
        # Relative file names are relative to the mapping file.
        resolve = {k: str(path.parent / v) for k in ("events", "items")
                   if (v := getattr(mapping, k)) and not Path(v).is_absolute()}
        return cls(**{**mapping.__dict__, **resolve})


def _check_type(key: str, value: Any, where: str) -> None:
    """Mapping values: a bool flag, string-to-string tables, or strings."""
    if key == "keep_extra_columns":
        ok = isinstance(value, bool)
        expected = "true or false"
    elif key in ("behavior_values", "item_columns"):
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        expected = "a table of text to text"
    else:
        ok = isinstance(value, str) and (value != "" or key == "sep")
        expected = "a non-empty text"
    if not ok:
        raise DataFormatError(f"{where}: key {key!r} must be {expected}, got {value!r}")


def load_generic(mapping: ColumnMapping, ctx: LoadContext) -> ImportResult:
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    files = [str(Path(mapping.events))]
    if mapping.items:
        files.append(str(Path(mapping.items)))
        _read_items(mapping, ctx, items)
    used = {c for c in (mapping.user_id, mapping.item_id, mapping.behavior, mapping.value,
                        mapping.ts, mapping.scenario, mapping.split) if c}
    path = Path(mapping.events)
    for row in _rows(path, mapping.sep, ctx, required=sorted(used)):
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
            split = _split(row, mapping)
            scenario = (row[mapping.scenario] if mapping.scenario else "") or DEFAULT_SCENARIO
            users.add(user)  # only once the whole row has parsed
            events.add(user, item, behavior, value, ts=ts, scenario=scenario,
                       source_split=split, context=context)
    return finish(ctx.dataset, events, items, users, ctx.log, files)


def _read_items(mapping: ColumnMapping, ctx: LoadContext, items: ItemsBuilder) -> None:
    cols = {"item_id": mapping.item_id, **mapping.item_columns}
    path = Path(mapping.items or "")
    for row in _rows(path, mapping.sep, ctx, required=sorted(set(cols.values()))):
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


def _rows(path: Path, sep: str | None, ctx: LoadContext, required: list[str]) -> Iterator[Row]:
    if path.suffix == ".parquet":
        yield from _parquet_rows(path, ctx.log, required)
        return
    if sep is None:
        sep = "\t" if path.suffix in (".tsv", ".tab") else ","
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
        return mapping.default_behavior
    raw = row[mapping.behavior]
    value = mapping.behavior_values.get(raw, raw)
    if value not in BEHAVIORS:
        raise RowError(f"unknown behaviour {raw!r} in column {mapping.behavior!r}")
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
