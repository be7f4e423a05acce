"""Item tables that grow in place.

Regression: every item posted to /v1/items made the engine ``torch.cat`` each item table
(text, unit, item-tower, retrieval matrix and its half copies: ~80 MB on Amazon Beauty),
which doubled a POST's time; added rows must cost a copy only when the spare room runs out.
"""

from __future__ import annotations

import pytest
import torch

from mtrec.serve.engine import Engine, NewItem
from mtrec.serve.rows import MIN_SPARE, Rows
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from tests.serve.conftest import Served


def test_rows_grow_in_place_until_the_room_runs_out() -> None:
    rows = Rows(torch.arange(6.0).reshape(3, 2))
    start, room = rows.data.data_ptr(), rows.capacity
    assert room == 3 + MIN_SPARE
    grown = rows.resize(5)
    assert grown.data_ptr() == start  # no copy
    assert grown.tolist() == [[0, 1], [2, 3], [4, 5], [0, 0], [0, 0]]
    grown[3] = 7.0  # the view writes through
    assert rows.data[3].tolist() == [7, 7]
    rows.resize(room + 1)  # past the room: one copy into a doubled buffer
    assert rows.capacity == 2 * room and rows.data.data_ptr() != start
    assert rows.data[:5].tolist() == [[0, 1], [2, 3], [4, 5], [7, 7], [0, 0]]
    assert not rows.data[5:].any()  # new rows are zero, whatever the buffer held
    rows.resize(2)  # never shrinks
    assert len(rows.data) == room + 1


@pytest.fixture()
def engine(served: Served) -> Engine:
    encoder = TextEncoder.from_config(TextEncoderConfig(model=str(served.encoder_dir),
                                                        bf16=False))
    return Engine.from_bundle(served.bundle, encoder=encoder)


def test_added_items_do_not_copy_the_tables(engine: Engine) -> None:
    names = ("text", "unit", "vectors", "matrix")
    cat = engine.catalog
    before = {n: getattr(cat, n).data_ptr() for n in names}
    codes = engine.upsert_items([NewItem("fresh-1", "a fresh lavender soap")])
    assert {n: getattr(cat, n).data_ptr() for n in names} == before
    assert all(len(getattr(cat, n)) == len(engine.item_ids) for n in names)
    assert engine.search("a fresh lavender soap", 1)[0][0] == "fresh-1"
    assert cat.matrix[codes[0]].abs().sum() > 0


def test_tables_and_half_copies_stay_right_past_the_room(engine: Engine) -> None:
    n = MIN_SPARE + 10  # more than the spare room in one batch, then one more
    engine.upsert_items([NewItem(f"bulk-{i}", f"bulk product number {i}") for i in range(n)])
    (last,) = engine.upsert_items([NewItem("after", "one more rose face cream")])
    cat = engine.catalog
    assert last == len(engine.item_ids) - 1 == len(cat.matrix) - 1
    rows = cat._rows(cat.vectors, cat.text)
    torch.testing.assert_close(cat.matrix, rows)
    for dtype, copy in engine.retrieval.scan.copies.items():
        torch.testing.assert_close(copy.data, cat.matrix.to(dtype))
    assert engine.similar_items("after", 3)  # in every index
    assert engine.search("one more rose face cream", 1)[0][0] == "after"
