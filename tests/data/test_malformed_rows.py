"""Malformed rows: every bad row is raised or quarantined with its file and line.

Each test writes a tiny copy of a real source layout (see ``malformed_helpers``), breaks
one row (truncated, non-numeric, unknown item, wrong column count, bad encoding, a
repeated header line) and checks that the error message or the quarantined
:class:`BadRow` names the file and the 1-based line (a header is line 1).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mtrec.data.reader import DataFormatError, RowLog
from mtrec.data.sources.base import LoadContext
from mtrec.data.sources.generic import ColumnMapping, load_generic
from mtrec.data.sources.pairs import load_pairs
from tests.data.malformed_helpers import (
    _GENRE_FLAGS,
    FILES,
    GENERIC_OK,
    SEPARATORS,
    _mapping,
    build_with,
    good_event_count,
    insert_line,
    load,
    loc,
    only_bad_row,
    replace_line,
)

# ---------------------------------------------------------------------------------------
# 1. Truncated last line (cut mid-row, no final newline)
# ---------------------------------------------------------------------------------------

TRUNCATED = [
    ("ml-100k", "ml-100k.inter"),
    ("ml-100k", "ml-100k.user"),
    ("ml-100k-grouplens", "u.data"),
    ("amazon-beauty", "item_meta.tsv"),
    ("amazon-scientific", "Scientific.test.inter"),
    ("amazon-scientific", "Scientific.train.inter"),
    ("amazon-office", "train.csv"),
    ("amazon-office", "test.csv"),
    ("jdata", "buy.txt"),
    ("ali-ccp-sample", "ali_ccp_train_sample.csv"),
]


def truncate_last_line(text: str, sep: str) -> tuple[str, int, str]:
    """Cut the last row before its last field and drop the final newline.

    Returns the new text, the (1-based) number of the cut line and the cut line itself.
    """
    rows = text.splitlines()
    cut = rows[-1].rsplit(sep, 1)[0]
    assert cut != rows[-1]
    return "\n".join([*rows[:-1], cut]), len(rows), cut


@pytest.mark.parametrize(("dataset", "file_name"), TRUNCATED)
def test_truncated_last_line_is_quarantined(tmp_path: Path, dataset: str, file_name: str
                                            ) -> None:
    text, line, cut = truncate_last_line(FILES[dataset][file_name],
                                         SEPARATORS.get(dataset, "\t"))
    folder = build_with(tmp_path, dataset, {file_name: text})
    assert not (folder / file_name).read_bytes().endswith(b"\n")
    result = load(folder, dataset)
    bad = only_bad_row(result, folder / file_name)
    assert bad.line == line
    assert bad.reason.startswith("wrong column count")
    assert bad.raw == cut
    assert result.events.num_rows > 0


@pytest.mark.parametrize(("dataset", "file_name"), TRUNCATED)
def test_truncated_last_line_strict_names_file_and_line(
    tmp_path: Path, dataset: str, file_name: str
) -> None:
    text, line, _ = truncate_last_line(FILES[dataset][file_name],
                                       SEPARATORS.get(dataset, "\t"))
    folder = build_with(tmp_path, dataset, {file_name: text})
    with pytest.raises(DataFormatError) as info:
        load(folder, dataset, strict=True)
    message = str(info.value)
    assert f"{folder / file_name}:{line}:" in message
    assert "wrong column count" in message


def test_truncated_inter_line_drops_exactly_that_event(tmp_path: Path) -> None:
    text, line, _ = truncate_last_line(FILES["ml-100k"]["ml-100k.inter"], "\t")
    assert line == 5
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": text})
    result = load(folder, "ml-100k")
    assert result.events.num_rows == good_event_count("ml-100k", tmp_path) - 1
    assert "244" not in result.events.column("user_id").to_pylist()
    assert result.summary()["rows_dropped_by_reason"] == {"wrong column count": 1}


def test_truncated_user_sequence_line_cut_after_the_user(tmp_path: Path) -> None:
    """A P5 sequence line cut right after the user id has no items left."""
    text = FILES["amazon-beauty"]["user_sequence.txt"]
    cut = text.splitlines()[-1].split()[0]
    folder = build_with(tmp_path, "amazon-beauty",
                        {"user_sequence.txt": "\n".join([*text.splitlines()[:-1], cut])})
    bad = only_bad_row(load(folder, "amazon-beauty"), folder / "user_sequence.txt")
    assert (bad.line, bad.reason, bad.raw) == (3, "user without items", cut)
    with pytest.raises(DataFormatError,
                       match=f"^{loc(folder / 'user_sequence.txt', 3)} user without"):
        load(folder, "amazon-beauty", strict=True)


# ---------------------------------------------------------------------------------------
# 2. Non-numeric rating
# ---------------------------------------------------------------------------------------


def test_non_numeric_rating_in_recbole_inter(tmp_path: Path) -> None:
    inter = replace_line(FILES["ml-100k"]["ml-100k.inter"], 3, "186\t302\tfive\t891717742")
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": inter})
    result = load(folder, "ml-100k")
    bad = only_bad_row(result, folder / "ml-100k.inter")
    assert bad.line == 3
    assert "rating" in bad.reason and "'five'" in bad.reason
    assert bad.reason == "non-numeric rating: 'five'"
    assert bad.raw == "186\t302\tfive\t891717742"
    assert result.events.num_rows == 3
    assert "186" not in result.events.column("user_id").to_pylist()

    with pytest.raises(DataFormatError) as info:
        load(folder, "ml-100k", strict=True)
    assert str(info.value) == f"{folder / 'ml-100k.inter'}:3: non-numeric rating: 'five'"


@pytest.mark.parametrize("value", ["nan", "inf", "3,5", ""])
def test_odd_rating_values_in_grouplens_u_data(tmp_path: Path, value: str) -> None:
    data = replace_line(FILES["ml-100k-grouplens"]["u.data"], 2, f"1\t2\t{value}\t876893171")
    folder = build_with(tmp_path, "ml-100k-grouplens", {"u.data": data})
    bad = only_bad_row(load(folder, "ml-100k-grouplens"), folder / "u.data")
    assert bad.line == 2  # u.data has no header: its first row is line 1
    assert bad.reason == f"non-numeric rating: {value!r}"


def test_non_numeric_label_in_ctr_csv(tmp_path: Path) -> None:
    name = "ali_ccp_train_sample.csv"
    csv = replace_line(FILES["ali-ccp-sample"][name], 3, "yes,0,2,1,11,1,0.562")
    folder = build_with(tmp_path, "ali-ccp-sample", {name: csv})
    bad = only_bad_row(load(folder, "ali-ccp-sample"), folder / name)
    assert (bad.line, bad.reason) == (3, "non-numeric click: 'yes'")


# ---------------------------------------------------------------------------------------
# 3. Unknown item in a split file
# ---------------------------------------------------------------------------------------


def test_unknown_item_in_unisrec_test_inter(tmp_path: Path) -> None:
    test = replace_line(FILES["amazon-scientific"]["Scientific.test.inter"], 3,
                        "1\t4 5 6\t99")
    folder = build_with(tmp_path, "amazon-scientific", {"Scientific.test.inter": test})
    result = load(folder, "amazon-scientific")
    bad = only_bad_row(result, folder / "Scientific.test.inter")
    assert bad.line == 3
    assert bad.reason == "unknown item '99' (not in item2index)"
    assert "AUSER1" not in result.events.column("user_id").to_pylist()
    assert result.events.num_rows == 8  # two users x (2 train + valid + test)

    with pytest.raises(DataFormatError,
                       match=f"^{loc(folder / 'Scientific.test.inter', 3)} unknown item '99'"):
        load(folder, "amazon-scientific", strict=True)


def test_unknown_item_in_unisrec_test_history(tmp_path: Path) -> None:
    test = replace_line(FILES["amazon-scientific"]["Scientific.test.inter"], 4,
                        "2\t1 42 5\t7")
    folder = build_with(tmp_path, "amazon-scientific", {"Scientific.test.inter": test})
    bad = only_bad_row(load(folder, "amazon-scientific"), folder / "Scientific.test.inter")
    assert (bad.line, bad.reason) == (4, "unknown item '42' (not in item2index)")


def test_unknown_item_in_rechorus_dev_csv(tmp_path: Path) -> None:
    dev = replace_line(FILES["amazon-office"]["dev.csv"], 3, "2\t77\t1070582400\t[3, 4]")
    folder = build_with(tmp_path, "amazon-office", {"dev.csv": dev})
    result = load(folder, "amazon-office")
    bad = only_bad_row(result, folder / "dev.csv")
    assert (bad.line, bad.reason) == (3, "unknown item '77' (not in item2index)")
    assert result.events.num_rows == 8

    with pytest.raises(DataFormatError, match=f"{loc(folder / 'dev.csv', 3)} unknown item '77'"):
        load(folder, "amazon-office", strict=True)


@pytest.mark.parametrize(("dataset", "file", "edit", "line", "text", "reason"), [
    ("amazon-office", "test.csv", replace_line, 4, "3\t3\t1070582500\t[1, 555]",
     "unknown item '555' (not in item2index)"),  # a sampled negative
    ("amazon-office", "item_meta.csv", insert_line, 3, "9\t1\t1\t[]\t[]",
     "unknown item '9' (not in item2index)"),
    ("ml-100k", "ml-100k.inter", replace_line, 4, "22\t9999\t1\t878887116",
     "unknown item '9999' (not in ml-100k.item)"),
    ("ml-100k-grouplens", "u.data", replace_line, 4, "2\t1682\t4\t876893119",
     "unknown item '1682' (not in u.item)"),
])
def test_unknown_item_is_quarantined_at_its_line(
    tmp_path: Path, dataset: str, file: str, edit: Callable[[str, int, str], str], line: int,
    text: str, reason: str,
) -> None:
    folder = build_with(tmp_path, dataset, {file: edit(FILES[dataset][file], line, text)})
    bad = only_bad_row(load(folder, dataset), folder / file)
    assert (bad.line, bad.reason) == (line, reason)


def test_item_above_count_in_jdata_pairs(tmp_path: Path) -> None:
    validation = replace_line(FILES["jdata"]["validation.txt"], 2, "2 6")
    folder = build_with(tmp_path, "jdata", {"validation.txt": validation})
    result = load(folder, "jdata")
    bad = only_bad_row(result, folder / "validation.txt")
    assert bad.line == 2
    assert bad.reason == "unknown item '6' (count.txt declares 1..5)"
    assert bad.raw == "2 6"
    assert "6" not in result.events.column("item_id").to_pylist()

    with pytest.raises(DataFormatError, match=f"{loc(folder / 'validation.txt', 2)} unknown item"):
        load(folder, "jdata", strict=True)


@pytest.mark.parametrize(("pair", "reason"), [
    ("0 3", "unknown user '0' (count.txt declares 1..3)"),
    ("4 3", "unknown user '4' (count.txt declares 1..3)"),
    ("2 -1", "non-numeric item id: '-1'"),
    ("x 1", "non-numeric user id: 'x'"),
])
def test_ids_outside_count_in_jdata(tmp_path: Path, pair: str, reason: str) -> None:
    folder = build_with(tmp_path, "jdata",
                        {"cart.txt": insert_line(FILES["jdata"]["cart.txt"], 1, pair)})
    bad = only_bad_row(load(folder, "jdata"), folder / "cart.txt")
    assert (bad.line, bad.reason) == (1, reason)


# ---------------------------------------------------------------------------------------
# 4. Wrong column count (too many or too few fields in the middle of a file)
# ---------------------------------------------------------------------------------------

WRONG_COLUMNS = [
    # dataset, file, line, new line text, expected, found
    ("ml-100k", "ml-100k.inter", 3, "186\t302\t3\t891717742\textra", 4, 5),
    ("ml-100k", "ml-100k.user", 2, "196\t49\tM\twriter", 5, 4),
    ("amazon-scientific", "Scientific.train.inter", 2, "0\t0\t1\t9", 3, 4),
    ("amazon-office", "test.csv", 2, "1\t2\t1070582500", 4, 3),
    ("ali-ccp-sample", "ali_ccp_train_sample.csv", 2, "0,0,1,1,10,1", 7, 6),
    ("jdata", "cart.txt", 2, "2 3 1", 2, 3),
    ("ml-100k-grouplens", "u.user", 1, "1|24|M|technician", 5, 4),
]


@pytest.mark.parametrize(("dataset", "file_name", "line", "new", "expected", "found"),
                         WRONG_COLUMNS)
def test_wrong_column_count_is_quarantined(
    tmp_path: Path, dataset: str, file_name: str, line: int, new: str, expected: int,
    found: int,
) -> None:
    text = replace_line(FILES[dataset][file_name], line, new)
    folder = build_with(tmp_path, dataset, {file_name: text})
    result = load(folder, dataset)
    bad = only_bad_row(result, folder / file_name)
    assert bad.line == line
    assert bad.reason == f"wrong column count: expected {expected} fields, found {found}"
    assert bad.raw == new

    with pytest.raises(DataFormatError) as info:
        load(folder, dataset, strict=True)
    assert str(info.value).startswith(f"{folder / file_name}:{line}: wrong column count")


def test_extra_field_in_headerless_id_map(tmp_path: Path) -> None:
    """``NAME.item2index`` has no header, so its first row is line 1."""
    text = insert_line(FILES["amazon-scientific"]["Scientific.item2index"], 10,
                       "B00EXTRA00\t9\tunexpected")
    folder = build_with(tmp_path, "amazon-scientific", {"Scientific.item2index": text})
    bad = only_bad_row(load(folder, "amazon-scientific"), folder / "Scientific.item2index")
    assert (bad.line, bad.reason) == (10, "wrong column count: expected 2 fields, found 3")



# ---------------------------------------------------------------------------------------
# 5. Repeated header line in the body
# ---------------------------------------------------------------------------------------

REPEATED_HEADER = [
    ("ml-100k", "ml-100k.inter", 4),
    ("amazon-office", "dev.csv", 3),
    ("amazon-beauty", "item_meta.tsv", 5),
    ("amazon-scientific", "Scientific.valid.inter", 3),
    ("ali-ccp-sample", "ali_ccp_train_sample.csv", 3),
]


@pytest.mark.parametrize(("dataset", "file_name", "line"), REPEATED_HEADER)
def test_repeated_header_line_is_quarantined(
    tmp_path: Path, dataset: str, file_name: str, line: int
) -> None:
    good = FILES[dataset][file_name]
    header = good.splitlines()[0]
    folder = build_with(tmp_path, dataset, {file_name: insert_line(good, line, header)})
    result = load(folder, dataset)
    bad = only_bad_row(result, folder / file_name)
    assert (bad.line, bad.reason, bad.raw) == (line, "repeated header line", header)
    assert result.events.num_rows == good_event_count(dataset, tmp_path)

    with pytest.raises(DataFormatError,
                       match=f"^{loc(folder / file_name, line)} repeated header line$"):
        load(folder, dataset, strict=True)


def test_concatenated_files_report_the_second_header(tmp_path: Path) -> None:
    """Two exports glued together: the second header is quarantined, its rows are read."""
    inter = FILES["ml-100k"]["ml-100k.inter"]
    glued = inter + inter.replace("196\t242", "196\t302", 1)
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": glued})
    result = load(folder, "ml-100k")
    bad = only_bad_row(result, folder / "ml-100k.inter")
    assert (bad.line, bad.reason) == (6, "repeated header line")
    assert result.events.num_rows == 8



# ---------------------------------------------------------------------------------------
# 6. Bad encoding
# ---------------------------------------------------------------------------------------

BAD_ENCODING = [
    # dataset, file, line, the invalid row as bytes, byte offset of the first bad byte
    ("ml-100k", "ml-100k.inter", 3, b"186\t302\t3\t8917\xff17742", 14),
    ("amazon-beauty", "user_sequence.txt", 2, b"A60XNB876KYML B0009P4PZC caf\xe9", 28),
    ("amazon-beauty", "item_meta.tsv", 3, b"9759091062\tXtreme Br\xc3\x28te Gel\tBeauty", 20),
    ("amazon-scientific", "Scientific.text", 4,
     b"B00SCI0002\tSanding Roll 2 \x80\x80. Industrial.", 26),
    ("amazon-office", "train.csv", 2, b"1\t1\t9701856\xfe00", 11),
    ("jdata", "collect.txt", 1, b"3 \xf04", 2),
    ("ali-ccp-sample", "ali_ccp_train_sample.csv", 4, b"1,1,3,2,12,2,0.0856\xa0", 19),
]


@pytest.mark.parametrize(("dataset", "file_name", "line", "row", "offset"), BAD_ENCODING)
def test_bad_encoding_is_quarantined(
    tmp_path: Path, dataset: str, file_name: str, line: int, row: bytes, offset: int
) -> None:
    rows = FILES[dataset][file_name].encode().splitlines()
    rows[line - 1] = row
    folder = build_with(tmp_path, dataset, {file_name: b"\n".join(rows) + b"\n"})
    result = load(folder, dataset)
    bad = only_bad_row(result, folder / file_name)
    assert bad.line == line
    assert bad.reason == f"bad encoding: not utf-8 at byte {offset}"
    # The raw text of an undecodable line keeps its newline (see the report).
    assert bad.raw.rstrip("\r\n") == row.decode("utf-8", "replace")
    assert result.events.num_rows > 0

    with pytest.raises(DataFormatError) as info:
        load(folder, dataset, strict=True)
    assert str(info.value).startswith(f"{folder / file_name}:{line}: bad encoding")


def test_latin1_grouplens_u_item_is_not_bad_encoding(tmp_path: Path) -> None:
    """GroupLens' u.item is Latin-1 by design: its accents are read, not quarantined."""
    item = replace_line(FILES["ml-100k-grouplens"]["u.item"], 3,
                        f"3|Café (1995)|01-Jan-1995||http://x|{_GENRE_FLAGS}")
    folder = build_with(tmp_path, "ml-100k-grouplens", {"u.item": item.encode("latin-1")})
    result = load(folder, "ml-100k-grouplens", strict=True)
    titles = dict(zip(result.items.column("item_id").to_pylist(),
                      result.items.column("title").to_pylist(), strict=True))
    assert titles["3"] == "Café"


def test_bom_and_crlf_keep_line_numbers(tmp_path: Path) -> None:
    """A UTF-8 BOM and Windows line ends change neither the header nor the line numbers."""
    inter = replace_line(FILES["ml-100k"]["ml-100k.inter"], 4, "22\t377\tbad\t878887116")
    data = ("\ufeff" + inter.replace("\n", "\r\n")).encode("utf-8")
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": data})
    result = load(folder, "ml-100k")
    bad = only_bad_row(result, folder / "ml-100k.inter")
    assert (bad.line, bad.reason, bad.raw) == (4, "non-numeric rating: 'bad'",
                                               "22\t377\tbad\t878887116")
    assert result.events.num_rows == 3


def test_bad_encoding_in_header_line_is_reported_at_line_1(tmp_path: Path) -> None:
    """An unreadable header cannot name columns: the import fails and names line 1."""
    inter = FILES["ml-100k"]["ml-100k.inter"].encode()
    data = inter.replace(b"rating:float", b"rat\xefng:float", 1)
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": data})
    path = folder / "ml-100k.inter"
    with pytest.raises(DataFormatError, match=f"^{loc(path, 1)} bad encoding"):
        load(folder, "ml-100k", strict=True)
    with pytest.raises(DataFormatError, match=f"^{loc(path, 1)} "):
        load(folder, "ml-100k")



# ---------------------------------------------------------------------------------------
# Regression tests for bugs found in mtrec/data, one per bug
# ---------------------------------------------------------------------------------------


# Regression: rechorus item_meta relation lists that are not JSON crashed the import.
def test_bad_json_in_rechorus_item_meta_is_quarantined(tmp_path: Path) -> None:
    meta = replace_line(FILES["amazon-office"]["item_meta.csv"], 3, "2\t1\t2\t[1, 3\t[1]")
    folder = build_with(tmp_path, "amazon-office", {"item_meta.csv": meta})
    bad = only_bad_row(load(folder, "amazon-office"), folder / "item_meta.csv")
    assert bad.line == 3


# Regression: str.isdigit() accepted '²' in JData ids, then int() crashed.
def test_superscript_digit_in_jdata_pair_is_quarantined(tmp_path: Path) -> None:
    folder = build_with(tmp_path, "jdata",
                        {"buy.txt": replace_line(FILES["jdata"]["buy.txt"], 2, "2 ²")})
    bad = only_bad_row(load(folder, "jdata"), folder / "buy.txt")
    assert bad.line == 2


# Regression: generic parse_time let nan/huge timestamps escape as ValueError.
@pytest.mark.parametrize("value", ["nan", "1e20"])
def test_out_of_range_time_in_generic_csv_is_quarantined(tmp_path: Path, value: str) -> None:
    mapping = _mapping(tmp_path, GENERIC_OK + f"u3,i3,4,{value}\n".encode())
    result = load_generic(mapping, LoadContext(dataset="mine"))
    assert [(b.file, b.line) for b in result.log.bad_rows] == [(mapping.events, 4)]


# Regression: a quarantined generic row still added its user.
def test_generic_quarantined_row_adds_no_user(tmp_path: Path) -> None:
    mapping = _mapping(tmp_path, GENERIC_OK + b"ghost,i1,four,1404216000\n")
    result = load_generic(mapping, LoadContext(dataset="mine"))
    assert [b.line for b in result.log.bad_rows] == [4]
    assert "ghost" not in result.users.column("user_id").to_pylist()


# Regression: an un-normalised events path disabled the mostly-bad check.
def test_generic_mostly_bad_with_unnormalised_path(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_bytes(b"uid,sku\nu1,i1\nu2\nu3\nu4\n")
    mapping = ColumnMapping(events=f"{tmp_path}/./events.csv", user_id="uid", item_id="sku")
    with pytest.raises(DataFormatError, match="3 of 4 rows are malformed"):
        load_generic(mapping, LoadContext(dataset="mine"))


# Regression: an empty cell under a declared RecBole rating column became a click silently.
def test_empty_rating_in_recbole_inter_is_quarantined(tmp_path: Path) -> None:
    inter = replace_line(FILES["ml-100k"]["ml-100k.inter"], 3, "186\t302\t\t891717742")
    folder = build_with(tmp_path, "ml-100k", {"ml-100k.inter": inter})
    result = load(folder, "ml-100k")
    bad = only_bad_row(result, folder / "ml-100k.inter")
    assert (bad.line, bad.reason, bad.raw) == (3, "non-numeric rating: ''",
                                               "186\t302\t\t891717742")
    assert result.events.num_rows == 3
    assert "186" not in result.events.column("user_id").to_pylist()
    assert set(result.events.column("behavior").to_pylist()) == {"rate"}

    with pytest.raises(DataFormatError) as info:
        load(folder, "ml-100k", strict=True)
    assert str(info.value) == f"{folder / 'ml-100k.inter'}:3: non-numeric rating: ''"


# Regression: UniSRec valid.inter targets were never checked against item2index.
def test_unknown_item_in_unisrec_valid_inter_is_quarantined(tmp_path: Path) -> None:
    valid = replace_line(FILES["amazon-scientific"]["Scientific.valid.inter"], 3, "1\t4 5\t99")
    folder = build_with(tmp_path, "amazon-scientific", {"Scientific.valid.inter": valid})
    path = folder / "Scientific.valid.inter"
    result = load(folder, "amazon-scientific")
    in_valid = [b for b in result.log.bad_rows if b.file == str(path)]
    assert [(b.line, b.raw) for b in in_valid] == [(3, "1\t4 5\t99")]
    assert "unknown item" in in_valid[0].reason and "'99'" in in_valid[0].reason
    assert "AUSER1" not in result.events.column("user_id").to_pylist()

    with pytest.raises(DataFormatError, match=f"^{loc(path, 3)} unknown item '99'"):
        load(folder, "amazon-scientific", strict=True)


def test_pairs_loader_called_directly(tmp_path: Path) -> None:
    """The loader functions are usable without the registry, with the same reporting."""
    folder = build_with(tmp_path, "jdata",
                        {"collect.txt": replace_line(FILES["jdata"]["collect.txt"], 2, "1 5 x")})
    ctx = LoadContext(dataset="jdata-direct", log=RowLog())
    result = load_pairs(folder, ctx)
    assert result.dataset == "jdata-direct"
    bad = only_bad_row(result, folder / "collect.txt")
    assert (bad.line, bad.reason) == (2, "wrong column count: expected 2 fields, found 3")
