"""Malformed files: empty files, duplicate header columns, mostly-bad files, the store.

A whole file that cannot be read (empty, a column named twice, more bad rows than good)
fails the import with its file and line; re-importing replaces the stored dataset, a
failed import leaves the store as it was, and the quarantined rows are kept in the
store's ``quarantine`` table.  The tiny source folders come from ``malformed_helpers``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mtrec.data.builder import ImportResult
from mtrec.data.imports import import_dataset, import_files
from mtrec.data.reader import DataFormatError, RowLog, iter_lines, iter_table
from mtrec.data.sources.base import LoadContext
from mtrec.data.sources.generic import load_generic
from mtrec.data.store import Store
from tests.data.malformed_helpers import (
    FILES,
    GENERIC_OK,
    ML_INTER_HEADER,
    NAMES,
    _lines,
    _mapping,
    build,
    build_with,
    insert_line,
    load,
    loc,
    only_bad_row,
    replace_line,
)

# ---------------------------------------------------------------------------------------
# The tiny folders themselves load cleanly (so every later failure is the injected one)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(FILES))
def test_tiny_copies_load_without_bad_rows(tmp_path: Path, dataset: str) -> None:
    result = load(build(tmp_path, dataset), dataset, strict=True)
    assert result.log.bad_rows == []
    assert result.events.num_rows > 0
    assert result.dataset == NAMES[dataset]


# ---------------------------------------------------------------------------------------
# 1. Duplicate column in the header
# ---------------------------------------------------------------------------------------

DUPLICATE_COLUMNS = [
    ("ml-100k", "ml-100k.inter",
     "user_id:token\titem_id:token\trating:float\tuser_id:token", "user_id"),
    # RecBole's ``:type`` suffix is not part of the name: these two columns clash too.
    ("ml-100k", "ml-100k.inter",
     "user_id:token\titem_id:token\trating:float\trating:token", "rating"),
    ("amazon-beauty", "item_meta.tsv", "asin\ttitle\tasin", "asin"),
    ("amazon-office", "dev.csv", "user_id\titem_id\ttime\titem_id", "item_id"),
    ("amazon-scientific", "Scientific.text", "item_id:token\titem_id:token", "item_id"),
    ("ali-ccp-sample", "ali_ccp_train_sample.csv",
     "click,purchase,101,101,205,301,D109_14", "101"),
]


@pytest.mark.parametrize(("dataset", "file_name", "header", "column"), DUPLICATE_COLUMNS)
def test_duplicate_column_in_header_is_an_error(
    tmp_path: Path, dataset: str, file_name: str, header: str, column: str
) -> None:
    text = replace_line(FILES[dataset][file_name], 1, header)
    folder = build_with(tmp_path, dataset, {file_name: text})
    for strict in (False, True):
        with pytest.raises(DataFormatError) as info:
            load(folder, dataset, strict=strict)
        message = str(info.value)
        assert message.startswith(f"{folder / file_name}:1:")
        assert ":1:" in message
        assert f"duplicate column {column!r}" in message



# ---------------------------------------------------------------------------------------
# 2. Empty file
# ---------------------------------------------------------------------------------------

EMPTY = [
    ("ml-100k", "ml-100k.inter"),
    ("ml-100k", "ml-100k.item"),
    ("ml-100k-grouplens", "u.data"),
    ("amazon-beauty", "user_sequence.txt"),
    ("amazon-beauty", "item_meta.tsv"),
    ("amazon-scientific", "Scientific.test.inter"),
    ("amazon-scientific", "Scientific.item2index"),
    ("amazon-office", "dev.csv"),
    ("jdata", "buy.txt"),
    ("ali-ccp-sample", "ali_ccp_train_sample.csv"),
]


@pytest.mark.parametrize(("dataset", "file_name"), EMPTY)
def test_empty_file_is_an_error(tmp_path: Path, dataset: str, file_name: str) -> None:
    folder = build_with(tmp_path, dataset, {file_name: ""})
    for strict in (False, True):
        with pytest.raises(DataFormatError) as info:
            load(folder, dataset, strict=strict)
        message = str(info.value)
        assert message.startswith(f"{folder / file_name}:1")
        assert f"{folder / file_name}:1" in message
        assert "empty" in message


def test_header_only_file_is_an_error(tmp_path: Path) -> None:
    """A dataset whose events file holds only its header has nothing to import."""
    header = FILES["ml-100k"]["ml-100k.inter"].splitlines()[0]
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": header + "\n"})
    with pytest.raises(DataFormatError,
                       match=f"^{loc(folder / 'ml-100k.inter', 1)} no usable event rows$"):
        load(folder, "ml-100k")


def test_blank_lines_only_is_no_header(tmp_path: Path) -> None:
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": "\n\n"})
    with pytest.raises(DataFormatError,
                       match=f"^{loc(folder / 'ml-100k.inter', 1)} no header line$"):
        load(folder, "ml-100k")
    with pytest.raises(DataFormatError, match=f"^{loc(folder / 'ml-100k.inter', 1)} blank line$"):
        load(folder, "ml-100k", strict=True)


def test_blank_line_inside_file_is_quarantined(tmp_path: Path) -> None:
    folder = build_with(tmp_path, "jdata",
                        {"buy.txt": insert_line(FILES["jdata"]["buy.txt"], 2, "   ")})
    bad = only_bad_row(load(folder, "jdata"), folder / "buy.txt")
    assert (bad.line, bad.reason) == (2, "blank line")


# ---------------------------------------------------------------------------------------
# A mostly-bad file means a wrong format: the import fails
# ---------------------------------------------------------------------------------------


def test_mostly_bad_file_raises(tmp_path: Path) -> None:
    inter = FILES["ml-100k"]["ml-100k.inter"]
    for line in (3, 4, 5):
        inter = replace_line(inter, line, inter.splitlines()[line - 1].replace("\t", " "))
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": inter})
    with pytest.raises(DataFormatError) as info:
        load(folder, "ml-100k")
    message = str(info.value)
    assert message.startswith(f"{folder / 'ml-100k.inter'}:3: 3 of 4 rows are malformed")
    assert "wrong column count" in message


def test_wrong_separator_is_mostly_bad(tmp_path: Path) -> None:
    """A comma-separated file where tabs are expected: every data row is bad."""
    csv = FILES["amazon-office"]["train.csv"].replace("\t", ",")
    folder = build_with(tmp_path, "amazon-office", {"train.csv": csv})
    with pytest.raises(DataFormatError) as info:
        load(folder, "amazon-office")
    # The header itself has one "column" so the missing columns are reported first.
    assert str(info.value).startswith(f"{folder / 'train.csv'}:1: missing column(s)")


def test_mostly_bad_pairs_file_raises(tmp_path: Path) -> None:
    folder = build_with(tmp_path, "jdata", {"test.txt": _lines("3 5", "1 40", "9 4")})
    with pytest.raises(DataFormatError) as info:
        load(folder, "jdata")
    assert str(info.value).startswith(
        f"{folder / 'test.txt'}:2: 2 of 3 rows are malformed (first: unknown item '40'")


def test_exactly_half_bad_is_still_accepted(tmp_path: Path) -> None:
    folder = build_with(tmp_path, "jdata", {"collect.txt": _lines("3 4", "1 50")})
    result = load(folder, "jdata")
    bad = only_bad_row(result, folder / "collect.txt")
    assert bad.line == 2
    assert result.summary()["rows_dropped"] == 1


def test_bad_rows_across_files_are_counted_per_file(tmp_path: Path) -> None:
    """One bad row in each of several files is not 'mostly bad' for any of them."""
    folder = build_with(tmp_path, "jdata", {
        "buy.txt": replace_line(FILES["jdata"]["buy.txt"], 1, "1 9"),
        "cart.txt": replace_line(FILES["jdata"]["cart.txt"], 3, "3"),
        "test.txt": replace_line(FILES["jdata"]["test.txt"], 2, "7 4"),
    })
    result = load(folder, "jdata")
    located = sorted((Path(b.file).name, b.line) for b in result.log.bad_rows)
    assert located == [("buy.txt", 1), ("cart.txt", 3), ("test.txt", 2)]
    # Reasons are grouped without their specifics (ids), so they do not grow with the data.
    assert result.summary()["rows_dropped_by_reason"] == {
        "unknown item": 1, "wrong column count": 1, "unknown user": 1}


def test_bad_count_txt_names_file(tmp_path: Path) -> None:
    folder = build_with(tmp_path, "jdata", {"count.txt": '{"users": 3, "item": 5}\n'})
    with pytest.raises(DataFormatError, match=f"^{loc(folder / 'count.txt', 1)} expected"):
        load(folder, "jdata")


def test_missing_split_file_names_file(tmp_path: Path) -> None:
    folder = build_with(tmp_path, "amazon-office", {"dev.csv": None})
    with pytest.raises(DataFormatError, match=f"^{loc(folder / 'dev.csv', 0)} file not found$"):
        load(folder, "amazon-office")



# ---------------------------------------------------------------------------------------
# The reader on its own
# ---------------------------------------------------------------------------------------


def test_reader_line_numbers_count_every_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_bytes(b"a\tb\n1\t2\n\n\xff\t3\na\tb\n4\n5\t6")
    log = RowLog()
    rows = [(r.line, r["a"], r["b"]) for r in iter_table(path, log, sep="\t",
                                                         required=("a", "b"))]
    assert rows == [(2, "1", "2"), (7, "5", "6")]
    assert [(b.file, b.line, b.reason.split(":")[0]) for b in log.bad_rows] == [
        (str(path), 3, "blank line"),
        (str(path), 4, "bad encoding"),
        (str(path), 5, "repeated header line"),
        (str(path), 6, "wrong column count"),
    ]
    assert log.rows_read[str(path)] == 6  # the header is not a data row
    with pytest.raises(DataFormatError) as info:
        log.check(path)
    assert str(info.value).startswith(f"{path}:3: 4 of 6 rows are malformed (first: blank line)")


def test_reader_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=f"^{loc(tmp_path / 'nope.txt', 0)} file not found"):
        list(iter_lines(tmp_path / "nope.txt", RowLog()))



# ---------------------------------------------------------------------------------------
# Your own files (generic CSV loader)
# ---------------------------------------------------------------------------------------


def test_generic_csv_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    mapping = _mapping(tmp_path, GENERIC_OK + b"u3,i3,four,1404216000\nu4,i\xff4,3,1\n"
                       b"u5,i5,3,1\nu6,i6,3,1\nu7,i7\n")
    result = load_generic(mapping, LoadContext(dataset="mine"))
    located = [(b.file, b.line, b.reason.split(":")[0]) for b in result.log.bad_rows]
    assert located == [
        (mapping.events, 4, "non-numeric rating"),
        (mapping.events, 5, "bad encoding"),
        (mapping.events, 8, "wrong column count"),
    ]
    assert result.events.num_rows == 4

    with pytest.raises(DataFormatError, match=f"^{loc(mapping.events, 4)} non-numeric rating"):
        load_generic(mapping, LoadContext(dataset="mine", log=RowLog(strict=True)))


def test_generic_duplicate_header_and_empty_file(tmp_path: Path) -> None:
    mapping = _mapping(tmp_path, b"uid,sku,rating,sku\nu1,i1,4,i2\n")
    with pytest.raises(DataFormatError, match=f"^{loc(mapping.events, 1)} duplicate column 'sku'"):
        load_generic(mapping, LoadContext(dataset="mine"))
    mapping = _mapping(tmp_path, b"")
    with pytest.raises(DataFormatError, match=f"^{loc(mapping.events, 1)} file is empty"):
        import_files("mine", mapping, store_dir=tmp_path / "store")
    assert not (tmp_path / "store" / "mine.duckdb").exists()



# ---------------------------------------------------------------------------------------
# The store: re-imports replace, failed imports lose nothing, bad rows are kept
# ---------------------------------------------------------------------------------------


def _with_one_bad_row(tmp_path: Path) -> Path:
    inter = replace_line(FILES["ml-100k"]["ml-100k.inter"], 3, "186\t302\tfive\t891717742")
    return build_with(tmp_path, "ml-100k", {"ml-100k.inter": inter})


def _store_state(path: Path) -> tuple[int, list[tuple[object, ...]], list[tuple[object, ...]]]:
    with Store.open(path) as store:
        events = store.query("SELECT seq, user_id, item_id, value FROM events ORDER BY seq")
        bad = store.query("SELECT file, line, reason, raw FROM quarantine ORDER BY file, line")
        return store.count("events"), events, bad


def test_importing_twice_does_not_duplicate_rows(tmp_path: Path) -> None:
    folder = build(tmp_path, "ml-100k")
    store_dir = tmp_path / "store"
    path, first = import_dataset("ml-100k", source=str(folder), store_dir=store_dir)
    assert path == store_dir / "ml-100k.duckdb"
    before = _store_state(path)
    assert before[0] == first.events.num_rows == 4

    path2, _ = import_dataset("ml-100k", source=str(folder), store_dir=store_dir)
    assert path2 == path
    assert _store_state(path) == before
    with Store.open(path) as store:
        assert store.count("events") == 4
        assert store.count("items") == 4
        assert store.count("users") == 4
    assert sorted(p.name for p in store_dir.iterdir()) == ["ml-100k.duckdb"]


def test_importing_twice_with_bad_rows_keeps_one_quarantine_copy(tmp_path: Path) -> None:
    folder = _with_one_bad_row(tmp_path)
    store_dir = tmp_path / "store"
    path, _ = import_dataset("ml-100k", source=str(folder), store_dir=store_dir)
    import_dataset("ml-100k", source=str(folder), store_dir=store_dir)
    with Store.open(path) as store:
        assert store.count("events") == 3
        assert store.count("quarantine") == 1


def test_quarantine_table_holds_bad_rows_with_file_and_line(tmp_path: Path) -> None:
    inter = FILES["ml-100k"]["ml-100k.inter"]
    inter = replace_line(inter, 3, "186\t302\tfive\t891717742")
    inter = insert_line(inter, 5, ML_INTER_HEADER)
    data = inter.encode() + b"244\t5\xff1\t2\t880606923\n"
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": data})
    # 3 of 6 rows bad is exactly half: still accepted.
    path, result = import_dataset("ml-100k", source=str(folder), store_dir=tmp_path / "s")
    with Store.open(path) as store:
        table = store.table("quarantine").to_pylist()
        meta = store.get_meta("import")
    inter_path = str(folder / "ml-100k.inter")
    rows = sorted((r["file"], r["line"], r["reason"], r["raw"].rstrip("\n")) for r in table)
    assert rows == [
        (inter_path, 3, "non-numeric rating: 'five'", "186\t302\tfive\t891717742"),
        (inter_path, 5, "repeated header line", ML_INTER_HEADER),
        (inter_path, 7, "bad encoding: not utf-8 at byte 5", "244\t5\ufffd1\t2\t880606923"),
    ]
    assert len(rows) == len(result.log.bad_rows)
    assert meta["rows_dropped"] == 3
    assert meta["rows_dropped_by_reason"] == {
        "non-numeric rating": 1, "repeated header line": 1, "bad encoding": 1}


def test_failing_strict_reimport_leaves_store_intact(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    good = build(tmp_path / "v1", "ml-100k")
    path, _ = import_dataset("ml-100k", source=str(good), store_dir=store_dir)
    before = _store_state(path)

    bad = _with_one_bad_row(tmp_path / "v2")
    with pytest.raises(DataFormatError, match=f"{loc(bad / 'ml-100k.inter', 3)} non-numeric"):
        import_dataset("ml-100k", source=str(bad), store_dir=store_dir, strict=True)
    assert _store_state(path) == before
    assert before[0] == 4
    assert sorted(p.name for p in store_dir.iterdir()) == ["ml-100k.duckdb"]


def test_failing_mostly_bad_reimport_leaves_store_intact(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    path, _ = import_dataset("ml-100k", source=str(_with_one_bad_row(tmp_path / "v1")),
                             store_dir=store_dir)
    before = _store_state(path)
    assert before[0] == 3 and len(before[2]) == 1

    broken = build_with(tmp_path / "v2", "ml-100k",
                        {"ml-100k.inter": FILES["ml-100k"]["ml-100k.inter"].replace("\t", ";")})
    with pytest.raises(DataFormatError, match=":1: missing column"):
        import_dataset("ml-100k", source=str(broken), store_dir=store_dir)
    assert _store_state(path) == before


def test_failure_while_writing_leaves_store_intact(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Store.write_import builds beside the old file: a crash half-way loses nothing."""
    store_dir = tmp_path / "store"
    path, _ = import_dataset("ml-100k", source=str(build(tmp_path / "v1", "ml-100k")),
                             store_dir=store_dir)
    before = _store_state(path)

    def boom(self: Store, result: ImportResult) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Store, "_insert_quarantine", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        import_dataset("ml-100k", source=str(_with_one_bad_row(tmp_path / "v2")),
                       store_dir=store_dir)
    assert _store_state(path) == before
    assert sorted(p.name for p in store_dir.iterdir()) == ["ml-100k.duckdb"]


def test_strict_import_writes_no_store_at_all(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    with pytest.raises(DataFormatError):
        import_dataset("ml-100k", source=str(_with_one_bad_row(tmp_path)),
                       store_dir=store_dir, strict=True)
    assert not (store_dir / "ml-100k.duckdb").exists()
