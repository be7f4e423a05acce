"""Accumulate canonical rows while a loader reads its files, then build checked tables."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from mtrec.data import schema
from mtrec.data.reader import DataFormatError, RowLog


@dataclass
class EventsBuilder:
    """Column lists for the ``events`` table; ``seq`` follows the order of :meth:`add`."""

    cols: dict[str, list[Any]] = field(
        default_factory=lambda: {n: [] for n in schema.EVENTS.names}
    )

    def add(
        self,
        user_id: str,
        item_id: str,
        behavior: str,
        value: float = 1.0,
        *,
        ts: datetime | None = None,
        scenario: str = schema.DEFAULT_SCENARIO,
        source_split: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        c = self.cols
        c["seq"].append(len(c["seq"]))
        c["user_id"].append(user_id)
        c["item_id"].append(item_id)
        c["scenario"].append(scenario)
        c["behavior"].append(behavior)
        c["value"].append(value)
        c["ts"].append(ts)
        c["source_split"].append(source_split)
        c["context"].append(json.dumps(context, sort_keys=True) if context else None)

    def __len__(self) -> int:
        return len(self.cols["seq"])


@dataclass
class _KeyedRows:
    """Rows of a keyed table (``items`` or ``users``); adding a key again updates it."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    table_name: str = ""

    def _put(self, key: str, fields: dict[str, Any]) -> None:
        attributes = fields.pop("attributes", None)
        row = self.rows.setdefault(key, {schema.KEYS[self.table_name]: key})
        row.update({k: v for k, v in fields.items() if v is not None})
        if attributes:
            row["attributes"] = json.dumps(attributes, sort_keys=True)

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        names = schema.SCHEMAS[self.table_name].names
        rows = list(self.rows.values())
        return schema.from_rows(self.table_name, {n: [r.get(n) for r in rows] for n in names})


@dataclass
class ItemsBuilder(_KeyedRows):
    table_name: str = "items"

    def add(self, item_id: str, **fields: Any) -> None:
        self._put(item_id, fields)


@dataclass
class UsersBuilder(_KeyedRows):
    table_name: str = "users"

    def add(self, user_id: str, attributes: dict[str, Any] | None = None) -> None:
        self._put(user_id, {"attributes": attributes})


@dataclass
class ImportResult:
    """What one import produced: the three tables plus everything it had to say."""

    dataset: str
    items: pa.Table
    users: pa.Table
    events: pa.Table
    log: RowLog
    files: list[str]
    notes: list[str] = field(default_factory=list)
    #: False when events carry no order within a user (no timestamps, and rows come from
    #: separate per-behaviour or impression files): order-based splits refuse them.
    ordered: bool = True

    def summary(self) -> dict[str, Any]:
        behaviors = Counter(self.events.column("behavior").to_pylist())
        return {
            "dataset": self.dataset,
            "files": self.files,
            "users": self.users.num_rows,
            "items": self.items.num_rows,
            "events": self.events.num_rows,
            "events_by_behavior": dict(sorted(behaviors.items())),
            "rows_dropped": len(self.log.bad_rows),
            "rows_dropped_by_reason": dict(self.log.reasons()),
            "ordered": self.ordered,
            "notes": self.notes,
        }


def finish(
    dataset: str,
    events: EventsBuilder,
    items: ItemsBuilder,
    users: UsersBuilder,
    log: RowLog,
    files: list[str],
    notes: list[str] | None = None,
    ordered: bool = True,
) -> ImportResult:
    """Add users/items that only occur in events (reported in the notes) and build tables."""
    if not len(events):
        where = files[0] if files else dataset
        raise DataFormatError(f"{where}:1: no usable event rows")
    notes = list(notes or [])
    for name, ids, builder in (
        ("item", events.cols["item_id"], items),
        ("user", events.cols["user_id"], users),
    ):
        missing = {i for i in ids if i not in builder}
        for i in sorted(missing):
            builder.add(i)
        if missing:
            noun = name if len(missing) == 1 else f"{name}s"
            verb = "occurs" if len(missing) == 1 else "occur"
            notes.append(f"{len(missing)} {noun} {verb} only in events (added without metadata)")
    for file in files:
        log.check(file)
    return ImportResult(
        dataset=dataset,
        items=items.table(),
        users=users.table(),
        events=schema.from_rows("events", events.cols),
        log=log,
        files=files,
        notes=notes,
        ordered=ordered,
    )
