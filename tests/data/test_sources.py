"""Where files come from (folder, archive, URL) and the bring-your-own-data importer."""

from __future__ import annotations

import functools
import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtrec.data.imports import import_files, load_dataset
from mtrec.data.reader import DataFormatError
from mtrec.data.sources import SourceError, get_spec
from mtrec.data.sources.generic import ColumnMapping
from mtrec.data.store import Store

U_ITEM = ("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
          "2|Caf\xe9 Society (1996)|01-Jan-1996||http://y|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n")
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n"
U_DATA = "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n"


def _grouplens(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "u.item").write_bytes(U_ITEM.encode("latin-1"))
    (folder / "u.user").write_text(U_USER)
    (folder / "u.data").write_text(U_DATA)
    return folder


def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in folder.iterdir():
            zf.write(path, f"ml-100k/{path.name}")
    return target


def test_grouplens_layout_from_a_folder(tmp_path: Path) -> None:
    result = load_dataset("ml-100k", source=str(_grouplens(tmp_path / "raw")),
                          cache_dir=tmp_path / "home")
    assert result.events.num_rows == 3 and result.users.num_rows == 2
    titles = dict(zip(result.items.column("item_id").to_pylist(),
                      result.items.column("text").to_pylist(), strict=True))
    assert titles == {"1": "Toy Story (1995). Animation, Children's, Comedy",
                      "2": "Café Society (1996). Drama"}


def test_archive_source_is_extracted_and_searched(tmp_path: Path) -> None:
    archive = _zip(_grouplens(tmp_path / "raw"), tmp_path / "ml-100k.zip")
    result = load_dataset("ml-100k", source=str(archive), cache_dir=tmp_path / "home")
    assert result.events.num_rows == 3
    assert (tmp_path / "home" / "downloads" / "extracted").is_dir()


@pytest.fixture()
def local_server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on the loopback address serving ``tmp_path``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_source_is_downloaded_once(tmp_path: Path, local_server: str) -> None:
    _zip(_grouplens(tmp_path / "raw"), tmp_path / "ml-100k.zip")
    url = f"{local_server}/ml-100k.zip"
    result = load_dataset("ml-100k", source=url, cache_dir=tmp_path / "home")
    assert result.events.num_rows == 3
    downloads = list((tmp_path / "home" / "downloads").glob("*ml-100k.zip"))
    assert len(downloads) == 1
    with pytest.raises(SourceError, match="cannot download"):
        load_dataset("ml-100k", source=f"{local_server}/missing.zip", cache_dir=tmp_path / "h")


def test_bad_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unknown dataset 'nope'"):
        get_spec("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"holds no ml-100k\.inter or u\.data"):
        load_dataset("ml-100k", source=str(tmp_path / "empty"))
    (tmp_path / "junk.zip").write_text("not an archive")
    with pytest.raises(SourceError, match="not a zip or tar archive"):
        load_dataset("ml-100k", source=str(tmp_path / "junk.zip"), cache_dir=tmp_path)
    with pytest.raises(SourceError, match=r"folder .* not found"):
        load_dataset("ml-100k", root=tmp_path / "nowhere")


EVENTS_CSV = ("uid,sku,action,time,stars,shop\n"
              "u1,a,pv,2024-01-01T10:00:00,1,web\n"
              "u1,b,buy,1704103200,5,web\n"
              "u2,a,fav,1704103300,,app\n")
ITEMS_CSV = "sku,name,cost\na,Red lipstick,9.5\nb,Blue gloss,12\n"


def _mapping(tmp_path: Path, **extra: object) -> Path:
    (tmp_path / "events.csv").write_text(EVENTS_CSV)
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    spec = {"events": "events.csv", "user_id": "uid", "item_id": "sku", "behavior": "action",
            "behavior_values": {"pv": "view", "buy": "purchase", "fav": "collect"},
            "ts": "time", "scenario": "shop", "items": "items.csv",
            "item_columns": {"title": "name", "price": "cost"}, **extra}
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(spec))
    return path


def test_generic_csv_with_mapping_file(tmp_path: Path) -> None:
    path, result = import_files("shop", ColumnMapping.from_file(_mapping(tmp_path)),
                                store_dir=tmp_path / "home")
    assert result.events.column("behavior").to_pylist() == ["view", "purchase", "collect"]
    assert result.events.column("scenario").to_pylist() == ["web", "web", "app"]
    assert [t.isoformat() for t in result.events.column("ts").to_pylist()] == [
        "2024-01-01T10:00:00", "2024-01-01T10:00:00", "2024-01-01T10:01:40"]
    with Store.open(path) as store:
        assert store.query("SELECT price FROM items ORDER BY item_id") == [(9.5,), (12.0,)]


def test_generic_parquet_and_unknown_item(tmp_path: Path) -> None:
    pq.write_table(pa.table({"uid": ["u1", "u2"], "sku": ["a", "zzz"]}), tmp_path / "ev.parquet")
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    mapping = ColumnMapping.from_dict({"events": str(tmp_path / "ev.parquet"), "user_id": "uid",
                                       "item_id": "sku", "items": str(tmp_path / "items.csv")})
    _, result = import_files("pq", mapping, store_dir=tmp_path)
    assert result.events.num_rows == 1
    [bad] = result.log.bad_rows
    assert (bad.file, bad.line) == (str(tmp_path / "ev.parquet"), 2)
    assert "unknown item 'zzz'" in bad.reason


@pytest.mark.parametrize("spec,message", [
    ({"user_id": "u", "item_id": "i"}, "missing required key 'events'"),
    ({"events": "e.csv", "user_id": "u", "item_id": "i", "colour": "x"}, "unknown key"),
    ({"events": "e.csv", "user_id": "u", "item_id": "i", "behavior_values": {"pv": "peek"}},
     "maps to unknown 'peek'"),
])
def test_mapping_errors(spec: dict[str, object], message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        ColumnMapping.from_dict(spec)


def test_generic_unknown_behaviour_value(tmp_path: Path) -> None:
    mapping = ColumnMapping.from_file(_mapping(tmp_path, behavior_values={"pv": "view",
                                                                          "fav": "collect"}))
    _, result = import_files("shop", mapping, store_dir=tmp_path / "home")
    reasons = [(b.line, b.reason) for b in result.log.bad_rows]
    assert [(line, r.split(":")[0]) for line, r in reasons] == [
        (3, "unknown behaviour 'buy' in column 'action'")]
    assert "--map behavior_value=buy:CANON" in reasons[0][1]
    # When most rows are bad the mapping is wrong: the import fails, naming file and line.
    mapping = ColumnMapping.from_file(_mapping(tmp_path, behavior_values={"pv": "view"}))
    with pytest.raises(DataFormatError, match=r"events\.csv:3: 2 of 3 rows are malformed"):
        import_files("shop", mapping, store_dir=tmp_path / "home")


def test_mapping_value_types_are_checked() -> None:
    """Regression: a list for behavior_values or a number for a column crashed with a TypeError."""
    base = {"events": "e.csv", "user_id": "u", "item_id": "i"}
    with pytest.raises(DataFormatError, match="'behavior_values' must be a table"):
        ColumnMapping.from_dict({**base, "behavior_values": ["pv"]})
    with pytest.raises(DataFormatError, match="'item_id' must be a non-empty text, got 5"):
        ColumnMapping.from_dict({**base, "item_id": 5})
    with pytest.raises(DataFormatError, match="'keep_extra_columns' must be true or false"):
        ColumnMapping.from_dict({**base, "keep_extra_columns": "false"})


def test_bad_price_keeps_the_item_and_its_events(tmp_path: Path) -> None:
    """Regression: one bad price cell dropped the item and every event of it."""
    (tmp_path / "items.csv").write_text("sku,cost\na,cheap\nb,3\n")
    (tmp_path / "events.csv").write_text("u,i\nx,a\ny,a\nx,b\n")
    mapping = ColumnMapping.from_dict({
        "events": str(tmp_path / "events.csv"), "user_id": "u", "item_id": "i",
        "items": str(tmp_path / "items.csv"), "item_columns": {"item_id": "sku", "price": "cost"}})
    _, result = import_files("prices", mapping, store_dir=tmp_path)
    assert result.events.num_rows == 3
    assert result.items.column("price").to_pylist() == [None, 3.0]
    [bad] = result.log.bad_rows
    assert bad.line == 2 and "item kept without a price" in bad.reason


def test_header_only_events_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text("u,i\n")
    mapping = ColumnMapping.from_dict({"events": str(tmp_path / "events.csv"),
                                       "user_id": "u", "item_id": "i"})
    with pytest.raises(DataFormatError, match=r"events\.csv:1: no usable event rows"):
        import_files("empty", mapping, store_dir=tmp_path)


SSLREC_EVENTS = ("user_id,item_id,behavior,ts\n"
                 "0,3,view,1433221969\n"
                 "0,1,cart,1433222104\n"
                 "1,3,purchase,1433222000\n"
                 "1,2,view,1433222500\n")


def _sslrec(folder: Path, events: str = SSLREC_EVENTS,
            test: str = "user_id,item_id,behavior\n0,4,purchase\n1,1,purchase\n") -> Path:
    folder.mkdir(parents=True)
    (folder / "events.csv").write_text(events)
    (folder / "test.csv").write_text(test)
    return folder


def test_sslrec_events_are_timed_train_and_test_rows_untimed(tmp_path: Path) -> None:
    result = load_dataset("retailrocket", source=str(_sslrec(tmp_path / "rr")),
                          cache_dir=tmp_path / "home")
    ev = result.events.to_pydict()
    # training events by time (user 1's purchase at ...000 precedes user 0's cart), then test
    assert list(zip(ev["user_id"], ev["item_id"], ev["source_split"], strict=True)) == [
        ("0", "3", "train"), ("1", "3", "train"), ("0", "1", "train"), ("1", "2", "train"),
        ("0", "4", "test"), ("1", "1", "test")]
    assert [t is not None for t in ev["ts"]] == [True] * 4 + [False] * 2
    assert sorted(result.items.column("item_id").to_pylist()) == ["1", "2", "3", "4"]
    assert "1 of 2 test rows hold an item with no training event (cold items)" in result.notes


def test_sslrec_bad_header_names_file_and_expected_header(tmp_path: Path) -> None:
    folder = _sslrec(tmp_path / "rr", events="user_id,item_id,behavior\n0,3,view\n")
    with pytest.raises(DataFormatError, match=(
            rf"^{folder / 'events.csv'}:1: missing column\(s\) \['ts'\] .*"
            r"\(expected header: user_id,item_id,behavior,ts\)")):
        load_dataset("retailrocket", source=str(folder), cache_dir=tmp_path / "home")


def test_sslrec_bad_rows_are_quarantined_with_file_and_line(tmp_path: Path) -> None:
    events = SSLREC_EVENTS + "2,5,collect,1433222600\n2,6,view,yesterday\n"  # lines 6, 7
    test = "user_id,item_id,behavior\n0,4,purchase\n1,1,buy\n0,5,purchase\n1,5,purchase\n"
    folder = _sslrec(tmp_path / "rr", events=events, test=test)
    result = load_dataset("retailrocket", source=str(folder), cache_dir=tmp_path / "home")
    assert [(Path(b.file).name, b.line, b.reason) for b in result.log.bad_rows] == [
        ("events.csv", 6, "unknown behaviour 'collect' (expected one of view, cart, purchase)"),
        ("events.csv", 7, "non-numeric ts: 'yesterday'"),
        ("test.csv", 3, "unknown behaviour 'buy' (expected one of view, cart, purchase)"),
        ("test.csv", 4, "duplicate user '0' (one held-out row per user)")]
    assert result.events.column("source_split").to_pylist().count("test") == 2
    # taobao-ub reads the same layout, with its own behaviours
    taobao = load_dataset("taobao-ub", source=str(_sslrec(tmp_path / "tb", events=events)),
                          cache_dir=tmp_path / "home")
    assert [(b.line, b.reason.split(" (")[0]) for b in taobao.log.bad_rows] == [
        (2, "unknown behaviour 'view'"), (5, "unknown behaviour 'view'"),
        (7, "unknown behaviour 'view'")]
