"""The canonical tables every loader produces: ``items``, ``users`` and ``events``.

Each table is a :class:`pyarrow.Table` with a fixed schema.  :func:`validate` checks a
table against its schema and names the offending field and row on failure.

>>> import pyarrow as pa
>>> t = pa.table({"user_id": ["u1"], "attributes": ['{"age": 3}']})
>>> validate(t, "users").num_rows
1
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

#: Behaviours the platform knows.  The list is extensible: ``review`` is what Amazon
#: review datasets record (an interaction without a rating value).
BEHAVIORS: tuple[str, ...] = (
    "view", "click", "like", "cart", "collect", "purchase", "rate", "review",
)

DEFAULT_SCENARIO = "default"

ITEMS = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("scenario", pa.string()),
    pa.field("title", pa.string()),
    pa.field("text", pa.string()),
    pa.field("category", pa.string()),
    pa.field("brand", pa.string()),
    pa.field("price", pa.float64()),
    pa.field("created_at", pa.timestamp("s")),
    pa.field("attributes", pa.string()),  # JSON object, source-specific extras
])

USERS = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("attributes", pa.string()),  # JSON object (age, gender, ...)
])

EVENTS = pa.schema([
    pa.field("seq", pa.int64(), nullable=False),  # global order; unique per event
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("scenario", pa.string(), nullable=False),
    pa.field("behavior", pa.string(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
    pa.field("ts", pa.timestamp("s")),  # may be missing: order is then kept by seq
    pa.field("source_split", pa.string()),  # the dataset's own split, if it ships one
    pa.field("context", pa.string()),  # JSON object: features kept from the source row
])

SCHEMAS: dict[str, pa.Schema] = {"items": ITEMS, "users": USERS, "events": EVENTS}
KEYS: dict[str, str] = {"items": "item_id", "users": "user_id", "events": "seq"}
SOURCE_SPLITS = ("train", "valid", "test")


class SchemaError(ValueError):
    """A table does not match its canonical schema."""


def empty(name: str) -> pa.Table:
    """An empty table with the canonical schema of ``name``."""
    return SCHEMAS[_check_name(name)].empty_table()


def from_rows(name: str, rows: dict[str, list[object]]) -> pa.Table:
    """Build a canonical table from column lists; missing optional columns become null.

    >>> from_rows("users", {"user_id": ["a", "b"]}).column("attributes").null_count
    2
    """
    schema = SCHEMAS[_check_name(name)]
    unknown = sorted(set(rows) - set(schema.names))
    if unknown:
        raise SchemaError(f"{name}: unknown column(s) {unknown}; expected {schema.names}")
    lengths = {len(v) for v in rows.values()}
    if len(lengths) > 1:
        raise SchemaError(f"{name}: columns have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    arrays = []
    for field in schema:
        values = rows.get(field.name)
        try:
            arrays.append(pa.array(values if values is not None else [None] * n, field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise SchemaError(f"{name}.{field.name}: {exc}") from exc
    return validate(pa.Table.from_arrays(arrays, schema=schema), name)


def validate(table: pa.Table, name: str) -> pa.Table:
    """Check ``table`` against the canonical schema ``name`` and return it conformed.

    Columns may come in any order; missing nullable columns are added as nulls.  Raises
    :class:`SchemaError` naming the field (and the first bad row) on any violation.
    """
    schema = SCHEMAS[_check_name(name)]
    unknown = sorted(set(table.column_names) - set(schema.names))
    if unknown:
        raise SchemaError(f"{name}: unknown column(s) {unknown}; expected {schema.names}")
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            if not field.nullable:
                raise SchemaError(f"{name}: required column '{field.name}' is missing")
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if col.type != field.type:
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"{name}.{field.name}: cannot convert {col.type} to {field.type}: {exc}"
                ) from exc
        if not field.nullable and col.null_count:
            row = _first_index(pc.is_null(col))
            raise SchemaError(f"{name}.{field.name}: missing value at row {row}")
        columns.append(col)
    out = pa.Table.from_arrays(columns, schema=schema)
    _check_values(out, name)
    return out


def _check_values(table: pa.Table, name: str) -> None:
    key = KEYS[name]
    keys = table.column(key)
    if name != "events":
        blank = pc.equal(pc.utf8_trim_whitespace(keys), "")
        if pc.any(blank).as_py():
            raise SchemaError(f"{name}.{key}: empty id at row {_first_index(blank)}")
    if pc.count_distinct(keys).as_py() != table.num_rows:
        counts = pc.value_counts(keys)
        dup = next(v["values"] for v in counts.to_pylist() if v["counts"] > 1)
        raise SchemaError(f"{name}.{key}: duplicate id {dup!r}")
    for json_col in ("attributes", "context"):
        if json_col in table.column_names:
            _check_json(table.column(json_col).to_pylist(), f"{name}.{json_col}")
    if name == "events":
        for col in ("user_id", "item_id"):
            blank = pc.equal(pc.utf8_trim_whitespace(table.column(col)), "")
            if pc.any(blank).as_py():
                raise SchemaError(f"events.{col}: empty id at row {_first_index(blank)}")
        bad = pc.invert(pc.is_in(table.column("behavior"), pa.array(BEHAVIORS)))
        if pc.any(bad).as_py():
            row = _first_index(bad)
            value = table.column("behavior")[row].as_py()
            raise SchemaError(
                f"events.behavior: unknown behaviour {value!r} at row {row}; "
                f"known: {', '.join(BEHAVIORS)}"
            )
        split = table.column("source_split")
        bad = pc.and_(pc.is_valid(split), pc.invert(pc.is_in(split, pa.array(SOURCE_SPLITS))))
        if pc.any(bad).as_py():
            row = _first_index(bad)
            raise SchemaError(
                f"events.source_split: {split[row].as_py()!r} at row {row} is not one of "
                f"{SOURCE_SPLITS}"
            )


def _check_json(values: Iterable[str | None], where: str) -> None:
    for row, value in enumerate(values):
        if value is None:
            continue
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{where}: invalid JSON at row {row}: {exc}") from exc
        if not isinstance(parsed, dict):
            raise SchemaError(f"{where}: row {row} is not a JSON object")


def _first_index(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def _check_name(name: str) -> str:
    if name not in SCHEMAS:
        raise SchemaError(f"unknown table {name!r}; expected one of {sorted(SCHEMAS)}")
    return name
