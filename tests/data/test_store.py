"""The store: atomic imports, transactional appends, upserts, reads and schema errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mtrec.data import schema
from mtrec.data.schema import SchemaError
from mtrec.data.store import Store, StoreError


def _events(items: list[str], users: list[str] | None = None) -> pa.Table:
    n = len(items)
    return schema.from_rows("events", {
        "seq": list(range(n)), "user_id": users or ["u-new"] * n, "item_id": items,
        "scenario": ["default"] * n, "behavior": ["click"] * n, "value": [1.0] * n})


def test_append_events_is_all_or_nothing(synthetic_store: Path) -> None:
    with Store.open(synthetic_store, read_only=False) as store:
        before = store.count("events")
        known = store.table("items", ["item_id"]).column("item_id")[0].as_py()
        with pytest.raises(StoreError, match="events row 1: unknown item_id 'nope'"):
            store.append_events(_events([known, "nope"]))
        assert store.count("events") == before
        assert store.append_events(_events([known, known])) == 2
        seqs = store.numpy("events", ["seq"])["seq"]
        assert len(np.unique(seqs)) == before + 2 and seqs.max() == before + 1
        assert store.query("SELECT count(*) FROM users WHERE user_id='u-new'")[0][0] == 1


def test_upsert_items_replaces_and_adds(synthetic_store: Path) -> None:
    with Store.open(synthetic_store, read_only=False) as store:
        n = store.count("items")
        first = store.table("items", ["item_id"]).column("item_id")[0].as_py()
        store.upsert_items(schema.from_rows("items", {
            "item_id": [first, "brand-new"], "title": ["Renamed", "New"]}))
        assert store.count("items") == n + 1
        assert store.query("SELECT title FROM items WHERE item_id=?", [first]) == [("Renamed",)]


def test_write_import_replaces_and_survives_failure(synthetic_store: Path, tmp_path: Path
                                                    ) -> None:
    from mtrec.data.synthetic import SyntheticConfig, generate

    with Store.open(synthetic_store) as store:
        n = store.count("events")
    result = generate(SyntheticConfig(n_users=60, n_items=40, seed=3)).result
    Store.write_import(synthetic_store, result)  # the same import again: no duplicates
    with Store.open(synthetic_store) as store:
        assert store.count("events") == n
    broken = result.__class__(**{**result.__dict__, "events": result.events.drop(["seq"])})
    with pytest.raises(SchemaError, match="required column 'seq'"):
        Store.write_import(synthetic_store, broken)
    with Store.open(synthetic_store) as store:
        assert store.count("events") == n
    assert not list(synthetic_store.parent.glob("*.importing*"))


def test_reads_as_arrow_and_numpy(synthetic_store: Path) -> None:
    with Store.open(synthetic_store) as store:
        table = store.table("events", ["user_id", "ts"])
        assert table.column_names == ["user_id", "ts"]
        arrays = store.numpy("events", ["seq", "value"])
        assert arrays["seq"].dtype == np.int64 and len(arrays["value"]) == table.num_rows
        with pytest.raises(StoreError, match="unknown table"):
            store.table("nope")
        with pytest.raises(StoreError, match="invalid column name"):
            store.table("events", ["seq; DROP TABLE events"])
        with pytest.raises(StoreError, match="no split 'loo'"):
            store.split("loo")


def test_open_missing_store_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"missing\.duckdb: store not found"):
        Store.open(tmp_path / "missing.duckdb")


@pytest.mark.parametrize("rows,message", [
    ({"item_id": ["a", "a"]}, "items.item_id: duplicate id 'a'"),
    ({"item_id": ["a", " "]}, "items.item_id: empty id at row 1"),
    ({"item_id": ["a"], "attributes": ["not json"]}, "items.attributes: invalid JSON at row 0"),
    ({"item_id": ["a"], "colour": ["red"]}, r"unknown column\(s\) \['colour'\]"),
    ({"item_id": ["a"], "price": ["cheap"]}, "items.price"),
])
def test_schema_errors_name_field_and_row(rows: dict[str, list[object]], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        schema.from_rows("items", rows)


def test_unknown_behaviour_and_split_are_rejected() -> None:
    bad = _events(["a"]).set_column(4, "behavior", pa.array(["teleport"]))
    with pytest.raises(SchemaError, match="unknown behaviour 'teleport' at row 0"):
        schema.validate(bad, "events")
    bad = _events(["a"]).set_column(7, "source_split", pa.array(["later"]))
    with pytest.raises(SchemaError, match="source_split: 'later' at row 0"):
        schema.validate(bad, "events")
