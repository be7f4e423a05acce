"""Where each canonical field comes from in the user's own files.

The mapping is a JSON or TOML file (or the same keys given as ``--map FIELD=COLUMN``)::

    {"events": "events.csv", "user_id": "uid", "item_id": "sku",
     "behavior": "action", "behavior_values": {"pv": "view", "buy": "purchase"},
     "ts": "time", "seq": "step", "value": "rating",
     "items": "items.csv", "item_columns": {"item_id": "sku", "title": "name"}}

Only ``events`` is required.  A field left out is taken from the column of its canonical
name when the file's header has one (:data:`EVENT_COLUMNS`, :data:`ITEM_COLUMNS`), so a
file whose columns already carry the canonical names needs no mapping at all.  Unknown keys
are errors.

Order of events within a user: by ``ts`` when mapped, ties (and files without ``ts``) by
``seq``, then by row order in the file.  The default behaviour is ``rate`` when a value
column is mapped and no behaviour column is, ``click`` otherwise.
"""

from __future__ import annotations

import csv
import difflib
import json
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mtrec.data.reader import DataFormatError
from mtrec.data.schema import BEHAVIORS

ITEM_FIELDS = ("item_id", "title", "text", "category", "brand", "price", "scenario")

#: event field -> column names it is read from when not mapped, first match wins
EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id",), "item_id": ("item_id",),
    "behavior": ("behavior", "behaviour"), "value": ("value", "rating"),
    "ts": ("ts", "timestamp"), "seq": ("seq",), "scenario": ("scenario",),
    "split": ("split",),
}
#: item field -> column names of the items file read when not mapped
ITEM_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("title",), "text": ("text",), "category": ("category", "categories"),
    "brand": ("brand",), "price": ("price",), "scenario": ("scenario",),
}


@dataclass(frozen=True)
class ColumnMapping:
    """Where each canonical field comes from; ``None``: the canonical column, if any."""

    events: str
    user_id: str | None = None
    item_id: str | None = None
    behavior: str | None = None
    default_behavior: str | None = None
    behavior_values: dict[str, str] = field(default_factory=dict)
    value: str | None = None
    ts: str | None = None
    seq: str | None = None
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
            hints = "".join(dict.fromkeys(
                _HINTS["item." if k.startswith("item.") else k] for k in unknown
                if k in _HINTS or k.startswith("item.")))
            raise DataFormatError(f"{where}: unknown key(s) {unknown}{hints}; known: "
                                  f"{sorted(known)}")
        if "events" not in data:
            raise DataFormatError(f"{where}: missing required key 'events' (the events file; "
                                  "or give it with --events)")
        for key, value in data.items():
            _check_type(key, value, where)
        mapping = cls(**data)
        for raw, canon in mapping.behavior_values.items():
            if canon not in BEHAVIORS:
                raise DataFormatError(
                    f"{where}: behaviour {raw!r} maps to unknown {canon!r}; known: {BEHAVIORS}")
        if mapping.default_behavior is not None and mapping.default_behavior not in BEHAVIORS:
            raise DataFormatError(f"{where}: default_behavior {mapping.default_behavior!r} is "
                                  f"not one of {BEHAVIORS}")
        bad = sorted(set(mapping.item_columns) - set(ITEM_FIELDS))
        if bad:
            raise DataFormatError(f"{where}: unknown item field(s) {bad}; known: {ITEM_FIELDS}")
        return mapping

    @classmethod
    def from_file(cls, path: str | Path, events: str | Path | None = None,
                  items: str | Path | None = None) -> ColumnMapping:
        """Read a JSON or TOML mapping; relative file names in it are relative to it.
        ``events`` / ``items`` (from ``--events`` / ``--items``) replace the file's."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}:1: cannot read mapping: {exc}") from exc
        if not isinstance(data, dict):
            raise DataFormatError(f"{path}:1: a mapping is an object of keys, got {data!r:.60}")
        given = {k: str(Path(v).resolve()) for k, v in (("events", events), ("items", items))
                 if v is not None}
        mapping = cls.from_dict({**data, **given}, str(path))
        resolve: dict[str, Any] = {
            k: str(path.parent / v) for k in ("events", "items")
            if (v := getattr(mapping, k)) and not Path(v).is_absolute()}
        return replace(mapping, **resolve)

    def separator(self, path: Path) -> str:
        if self.sep is not None:
            return self.sep
        return "\t" if path.suffix in (".tsv", ".tab") else ","

    def resolved(self) -> ColumnMapping:
        """Every field left out filled from the files' headers; the two ids required; every
        mapped column checked against its file's header."""
        events = Path(self.events)
        header = _file_header(events, "events", self.separator(events))
        for key in EVENT_COLUMNS:
            _check_column(events, header, key, getattr(self, key))
        found: dict[str, Any] = {key: column for key, names in EVENT_COLUMNS.items()
                                 if getattr(self, key) is None
                                 and (column := _first(names, header))}
        mapping = replace(self, **found)
        for key in ("user_id", "item_id"):
            if getattr(mapping, key) is None:
                raise DataFormatError(
                    f"{events}:1: no {key} column: the header is {header}; name the column "
                    f"with --map {key}=COLUMN (or \"{key}\" in the mapping file)")
        default = mapping.default_behavior or ("rate" if mapping.value and not mapping.behavior
                                               else "click")
        mapping = replace(mapping, default_behavior=default)
        if mapping.items:
            mapping = replace(mapping, item_columns=mapping._item_columns())
        return mapping

    def _item_columns(self) -> dict[str, str]:
        path = Path(self.items or "")
        header = _file_header(path, "items", self.separator(path))
        for key, column in self.item_columns.items():
            _check_column(path, header, f"item.{key}", column)
        columns = dict(self.item_columns)
        if "item_id" not in columns:
            found = next((c for c in (self.item_id, "item_id") if c in header), None)
            if found is None:
                raise DataFormatError(
                    f"{path}:1: no item id column: the header is {header}; name it with "
                    f"--map item.item_id=COLUMN (or \"item_columns\" in the mapping file)")
            columns["item_id"] = found
        for key, names in ITEM_COLUMNS.items():
            if key not in columns and (near := _first(names, header)):
                columns[key] = near
        return columns


_HINTS = {
    "behavior_value": " (in a mapping file: \"behavior_values\", a table RAW -> behaviour)",
    "item.": " (in a mapping file: \"item_columns\", a table FIELD -> column)",
}


def _file_header(path: Path, role: str, sep: str) -> list[str]:
    if not path.is_file():
        raise DataFormatError(f"{path}: {role} file not found")
    header = read_header(path, sep)
    for n, name in enumerate(header):
        if name in header[:n]:
            raise DataFormatError(f"{path}:1: duplicate column {name!r} in header")
    return header


def _check_column(path: Path, header: list[str], key: str, column: str | None) -> None:
    """A mapped column must be in the header: the error names the mapping and a near name."""
    if column is None or column in header:
        return
    near = difflib.get_close_matches(column, header, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise DataFormatError(f"{path}:1: {key}={column}: no column {column!r}; the header is "
                          f"{header}{hint}")


def _first(names: tuple[str, ...], header: list[str]) -> str | None:
    return next((n for n in names if n in header), None)


def read_header(path: Path, sep: str) -> list[str]:
    """The column names of a CSV/TSV (first line) or Parquet file."""
    if not path.is_file():
        raise DataFormatError(f"{path}:0: file not found")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}:1: file is empty")
    try:
        if path.suffix == ".parquet":
            return list(pq.read_schema(path).names)
        with path.open("rb") as fh:
            first = fh.readline().decode("utf-8-sig")
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{path}:1: cannot read the header: {exc}") from exc
    if not first.strip():
        raise DataFormatError(f"{path}:1: no header line")
    return [c.strip() for c in next(csv.reader([first.rstrip("\r\n")], delimiter=sep))]


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
