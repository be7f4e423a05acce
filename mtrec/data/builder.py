"""Accumulate canonical rows while a loader reads its files, then build checked tables."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from mtrec.data import schema
from mtrec.data.reader import RowLog


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
class ItemsBuilder:
    """Column lists for the ``items`` table, keyed by id (a second add updates fields)."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, item_id: str, **fields: Any) -> None:
        attributes = fields.pop("attributes", None)
        row = self.rows.setdefault(item_id, {"item_id": item_id})
        row.update({k: v for k, v in fields.items() if v is not None})
        if attributes:
            row["attributes"] = json.dumps(attributes, sort_keys=True)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        return _rows_table("items", list(self.rows.values()))


@dataclass
class UsersBuilder:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, user_id: str, attributes: dict[str, Any] | None = None) -> None:
        row = self.rows.setdefault(user_id, {"user_id": user_id})
        if attributes:
            row["attributes"] = json.dumps(attributes, sort_keys=True)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        return _rows_table("users", list(self.rows.values()))


def _rows_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    names = schema.SCHEMAS[name].names
    return schema.from_rows(name, {n: [r.get(n) for r in rows] for n in names})


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
) -> ImportResult:
    """Add users/items that only occur in events (reported in the notes) and build tables."""
    notes = list(notes or [])
    for name, ids, builder in (
        ("item", events.cols["item_id"], items),
        ("user", events.cols["user_id"], users),
    ):
        missing = {i for i in ids if i not in builder}
        for i in sorted(missing):
            builder.add(i)
        if missing:
            notes.append(f"{len(missing)} {name}s occur only in events (added without metadata)")
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
    )
