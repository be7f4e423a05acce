"""The canonical tables in an embedded DuckDB file, behind a small interface.

>>> import tempfile, pathlib
>>> from mtrec.data import schema
>>> path = pathlib.Path(tempfile.mkdtemp()) / "demo.duckdb"
>>> with Store.create(path) as store:
...     _ = store.upsert_items(schema.from_rows("items", {"item_id": ["i1"], "title": ["Soap"]}))
...     _ = store.append_events(schema.from_rows("events", {
...         "seq": [0], "user_id": ["u1"], "item_id": ["i1"], "scenario": ["default"],
...         "behavior": ["click"], "value": [1.0]}))
...     store.count("events")
1
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from mtrec.data import schema
from mtrec.data.builder import ImportResult

_DDL = """
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR PRIMARY KEY, scenario VARCHAR, title VARCHAR, text VARCHAR,
    category VARCHAR, brand VARCHAR, price DOUBLE, created_at TIMESTAMP, attributes VARCHAR);
CREATE TABLE IF NOT EXISTS users (user_id VARCHAR PRIMARY KEY, attributes VARCHAR);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT PRIMARY KEY, user_id VARCHAR NOT NULL, item_id VARCHAR NOT NULL,
    scenario VARCHAR NOT NULL, behavior VARCHAR NOT NULL, value DOUBLE NOT NULL,
    ts TIMESTAMP, source_split VARCHAR, context VARCHAR);
CREATE TABLE IF NOT EXISTS quarantine (file VARCHAR, line BIGINT, reason VARCHAR, raw VARCHAR);
CREATE TABLE IF NOT EXISTS splits (protocol VARCHAR, seq BIGINT, part VARCHAR);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
"""

TABLES = ("items", "users", "events", "quarantine", "splits", "meta")
SPLIT_PARTS = ("train", "valid", "test", "dropped")


class StoreError(RuntimeError):
    """The store file is missing, locked or inconsistent with a request."""


class Store:
    """An open DuckDB store.  Use :meth:`create` or :meth:`open`, ideally in ``with``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path

    # -- life cycle -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path) -> Store:
        """Open ``path`` for writing, creating the file and tables when absent."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = _connect(path, read_only=False)
        con.execute(_DDL)
        return cls(con, path)

    @classmethod
    def open(cls, path: str | Path, read_only: bool = True) -> Store:
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"{path}: store not found; import a dataset first")
        return cls(_connect(path, read_only=read_only), path)

    @classmethod
    def write_import(cls, path: str | Path, result: ImportResult) -> None:
        """Write a whole import to ``path`` atomically.

        The new store is built beside the old one and renamed over it only when complete,
        so importing twice never duplicates rows and a failed import loses nothing.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".importing")
        tmp.unlink(missing_ok=True)
        try:
            with cls.create(tmp) as store:
                for name in ("items", "users", "events"):
                    store._insert(name, schema.validate(getattr(result, name), name))
                store._insert_quarantine(result)
                store.set_meta("import", result.summary())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            Path(str(tmp) + ".wal").unlink(missing_ok=True)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _staged(self, name: str, data: pa.Table, transaction: bool = True) -> Iterator[None]:
        """Expose ``data`` as view ``name`` inside one transaction (rolled back on error)."""
        self.con.register(name, data)
        if transaction:
            self.con.begin()
        try:
            yield
            if transaction:
                self.con.commit()
        except Exception:
            if transaction:
                self.con.rollback()
            raise
        finally:
            self.con.unregister(name)

    def append_events(self, events: pa.Table) -> int:
        """Append events in one transaction; ``seq`` is reassigned after the last stored.

        Every event must name a known item; unknown users are created.  Returns the
        number of events stored.  On any error nothing is written.
        """
        events = schema.validate(events, "events")
        offset = int(self.query("SELECT coalesce(max(seq) + 1, 0) FROM events")[0][0])
        events = events.set_column(
            0, "seq", pa.array(np.arange(offset, offset + events.num_rows), pa.int64())
        )
        with self._staged("_new_events", events):
            unknown = self.query(
                "SELECT e.item_id, min(e.seq) - ? FROM _new_events e "
                "ANTI JOIN items i USING (item_id) GROUP BY 1 ORDER BY 2 LIMIT 1",
                [offset],
            )
            if unknown:
                item, row = unknown[0]
                raise StoreError(f"events row {row}: unknown item_id {item!r}; add the item first")
            self.con.execute(
                "INSERT INTO users SELECT DISTINCT user_id, NULL FROM _new_events "
                "ANTI JOIN users USING (user_id)"
            )
            self.con.execute("INSERT INTO events SELECT * FROM _new_events")
        return events.num_rows

    def upsert_items(self, items: pa.Table) -> int:
        """Insert new items and replace the rows of existing ones, in one transaction."""
        items = schema.validate(items, "items")
        with self._staged("_new_items", items):
            self.con.execute("DELETE FROM items WHERE item_id IN (SELECT item_id FROM _new_items)")
            self.con.execute("INSERT INTO items SELECT * FROM _new_items")
        return items.num_rows

    def save_split(self, protocol: str, parts: pa.Table, report: dict[str, Any]) -> None:
        """Replace the stored assignment of ``protocol`` (columns ``seq``, ``part``)."""
        bad = set(parts.column("part").to_pylist()) - set(SPLIT_PARTS)
        if bad:
            raise StoreError(f"split parts {sorted(bad)} not in {SPLIT_PARTS}")
        with self._staged("_parts", parts):
            self.con.execute("DELETE FROM splits WHERE protocol = ?", [protocol])
            self.con.execute("INSERT INTO splits SELECT ?, seq, part FROM _parts", [protocol])
            self.set_meta(f"split:{protocol}", report)

    def set_meta(self, key: str, value: Any) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, json.dumps(value, default=str)]
        )

    def _insert(self, table: str, data: pa.Table) -> None:
        """Append to ``table`` (inside the caller's transaction, if any)."""
        with self._staged("_data", data, transaction=False):
            self.con.execute(f"INSERT INTO {table} SELECT * FROM _data")

    def _insert_quarantine(self, result: ImportResult) -> None:
        bad = result.log.bad_rows
        if not bad:
            return
        data = pa.table({
            "file": [b.file for b in bad], "line": [b.line for b in bad],
            "reason": [b.reason for b in bad], "raw": [b.raw for b in bad],
        })
        self._insert("quarantine", data)

    # -- reading ----------------------------------------------------------------------
    def table(self, name: str, columns: Sequence[str] | None = None,
              order_by: str | None = None) -> pa.Table:
        """Read a table (or some of its columns) as Arrow."""
        if name not in TABLES:
            raise StoreError(f"unknown table {name!r}; expected one of {TABLES}")
        cols = ", ".join(_ident(c) for c in columns) if columns else "*"
        sql = f"SELECT {cols} FROM {name}"
        if order_by is None and name in schema.KEYS:
            order_by = schema.KEYS[name]
        if order_by:
            sql += f" ORDER BY {_ident(order_by)}"
        try:
            return self.con.sql(sql).to_arrow_table()
        except duckdb.BinderException as exc:
            raise StoreError(f"{name}: {exc}") from exc

    def numpy(self, name: str, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """Read columns as NumPy arrays (strings become object arrays)."""
        data = self.table(name, columns)
        return {c: data.column(c).to_numpy(zero_copy_only=False) for c in columns}

    def split(self, protocol: str) -> pa.Table:
        """The stored assignment ``(seq, part)`` of a split protocol, ordered by ``seq``."""
        out = self.con.sql(
            "SELECT seq, part FROM splits WHERE protocol = ? ORDER BY seq", params=[protocol]
        ).to_arrow_table()
        if out.num_rows == 0:
            raise StoreError(f"{self.path}: no split {protocol!r}; run `mtrec data split`")
        return out

    def count(self, name: str) -> int:
        return int(self.query(f"SELECT count(*) FROM {_ident(name)}")[0][0])

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM meta WHERE key = ?", [key])
        return json.loads(rows[0][0]) if rows else default

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params)).fetchall()


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        raise StoreError(f"{path}: cannot open store: {exc}") from exc


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise StoreError(f"invalid column name {name!r}")
    return f'"{name}"'
