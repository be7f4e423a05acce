"""Shared fixtures for the malformed-source tests (``test_malformed_rows.py``,
``test_malformed_files.py``).

``FILES`` holds tiny copies (a few lines) of the real source layouts (the formats of the
folders under ``shared/data``); the helpers write such a folder in ``tmp_path`` with one
thing broken, load it and pick out the quarantined :class:`BadRow`.  Lines are 1-based
(a header is line 1).  Nothing here reads a real dataset or the network.
"""

from __future__ import annotations

import re
from pathlib import Path

from mtrec.data.builder import ImportResult
from mtrec.data.imports import load_dataset
from mtrec.data.reader import BadRow
from mtrec.data.sources.generic import ColumnMapping

# ---------------------------------------------------------------------------------------
# Tiny copies of the real source formats
# ---------------------------------------------------------------------------------------

ML_INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def _lines(*rows: str) -> str:
    return "".join(f"{r}\n" for r in rows)


def _scientific() -> dict[str, str]:
    """UniSRec layout: per user a sequence a b c d -> train (a->b), valid (a b->c), test."""
    seqs = {0: [0, 1, 2, 3], 1: [4, 5, 6, 7], 2: [1, 3, 5, 7]}
    header = "user_id:token\titem_id_list:token_seq\titem_id:token"
    return {
        "Scientific.item2index": _lines(*(f"B00SCI{i:04d}\t{i}" for i in range(9))),
        "Scientific.user2index": _lines(*(f"AUSER{u}\t{u}" for u in seqs)),
        "Scientific.text": _lines("item_id:token\ttext:token_seq", *(
            f"B00SCI{i:04d}\tSanding Roll {i}. Industrial & Scientific. PORTER-CABLE. "
            for i in range(9))),
        "Scientific.train.inter": _lines(header, *(f"{u}\t{s[0]}\t{s[1]}"
                                                   for u, s in seqs.items())),
        "Scientific.valid.inter": _lines(header, *(f"{u}\t{s[0]} {s[1]}\t{s[2]}"
                                                   for u, s in seqs.items())),
        "Scientific.test.inter": _lines(header, *(f"{u}\t{s[0]} {s[1]} {s[2]}\t{s[3]}"
                                                  for u, s in seqs.items())),
    }


_GENRE_FLAGS = "|".join(["0"] * 3 + ["1"] * 2 + ["0"] * 14)  # 19 genre flags

FILES: dict[str, dict[str, str]] = {
    "ml-100k": {
        "ml-100k.inter": _lines(
            ML_INTER_HEADER,
            "196\t242\t3\t881250949",
            "186\t302\t3\t891717742",
            "22\t377\t1\t878887116",
            "244\t51\t2\t880606923",
        ),
        "ml-100k.item": _lines(
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
            "242\tKolya\t1996\tComedy",
            "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller",
            "377\tHeavyweights\t1994\tChildren's Comedy",
            "51\tLegends of the Fall\t1994\tDrama Romance War Western",
        ),
        "ml-100k.user": _lines(
            "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
            "196\t49\tM\twriter\t55105",
            "186\t39\tF\texecutive\t00000",
            "22\t25\tM\twriter\t40206",
            "244\t28\tM\ttechnician\t80525",
        ),
    },
    # GroupLens' own layout of the same dataset (no ml-100k.inter in the folder).
    "ml-100k-grouplens": {
        "u.item": _lines(
            f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy|{_GENRE_FLAGS}",
            f"2|GoldenEye (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Gold|{_GENRE_FLAGS}",
            f"3|Four Rooms (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Four|{_GENRE_FLAGS}",
        ),
        "u.user": _lines("1|24|M|technician|85711", "2|53|F|other|94043"),
        "u.data": _lines(
            "1\t1\t5\t874965758",
            "1\t2\t3\t876893171",
            "2\t3\t4\t878542960",
            "2\t1\t4\t876893119",
        ),
    },
    "amazon-beauty": {
        "user_sequence.txt": _lines(
            "A1YJEY40YUW4SE B004756YJA B004ZT0SSG 7806397051",
            "A60XNB876KYML B0009P4PZC 7806397051 9759091062",
            "A3G6XNM240RMWA 7806397051 B003H8180I",
        ),
        "item_meta.tsv": _lines(
            "asin\ttitle\tcategories",
            "7806397051\tWAWO 15 Color Professionl Makeup Eyeshadow\t"
            "Beauty > Makeup > Face > Concealers & Neutralizers",
            "9759091062\tXtreme Brite Brightening Gel 1oz.\t"
            "Beauty > Hair Care > Styling Products > Creams, Gels & Lotions",
            "B004756YJA\tNail Polish\tBeauty > Makeup > Nails",
        ),
    },
    "amazon-scientific": _scientific(),
    "amazon-office": {
        "Office.item2index": _lines(
            "B0000AG93P\t1", "B00004VVIX\t2", "B000059RDW\t3", "B00000JBLU\t4"),
        "Office.text": _lines(
            "id\ttext",
            "B0000AG93P\tSwingline Stapler Office Swingline",
            "B00004VVIX\tPost-it Notes Office 3M",
            "B000059RDW\tSharpie Markers Office Sharpie",
            "B00000JBLU\tTexas Instruments TI-1795 SV Calculator Texas Instruments",
        ),
        "item_meta.csv": _lines(
            "item_id\ti_category\ti_brand\tr_complement\tr_substitute",
            "1\t1\t1\t[2, 3]\t[]",
            "2\t1\t2\t[]\t[1]",
        ),
        "train.csv": _lines(
            "user_id\titem_id\ttime",
            "1\t1\t970185600",
            "2\t2\t983404800",
            "1\t3\t990000000",
        ),
        "dev.csv": _lines(
            "user_id\titem_id\ttime\tneg_items",
            "1\t4\t1070582400\t[2, 3]",
            "2\t1\t1070582400\t[3, 4]",
            "3\t2\t1070582400\t[1, 4]",
        ),
        "test.csv": _lines(
            "user_id\titem_id\ttime\tneg_items",
            "1\t2\t1070582500\t[1, 3]",
            "2\t4\t1070582500\t[2, 3]",
            "3\t3\t1070582500\t[1, 2]",
        ),
    },
    "jdata": {
        "count.txt": '{"user": 3, "item": 5}\n',
        "buy.txt": _lines("1 1", "2 2", "3 3"),
        "cart.txt": _lines("1 2", "2 3", "3 1"),
        "collect.txt": _lines("3 4", "1 5"),
        "validation.txt": _lines("1 3", "2 4", "3 2"),
        "test.txt": _lines("3 5", "1 4", "2 1"),
    },
    "ali-ccp-sample": {
        "ali_ccp_train_sample.csv": _lines(
            "click,purchase,101,121,205,301,D109_14",
            "0,0,1,1,10,1,0.4734",
            "1,0,2,1,11,1,0.562",
            "1,1,3,2,12,2,0.0856",
        ),
    },
}

# Which registry name reads each tiny folder.
NAMES = {key: key for key in FILES} | {"ml-100k-grouplens": "ml-100k"}
SEPARATORS = {"jdata": " ", "ali-ccp-sample": ",", "ml-100k-grouplens": "\t"}


def build(tmp_path: Path, dataset: str) -> Path:
    """Write the unchanged tiny ``dataset`` folder under ``tmp_path``."""
    return build_with(tmp_path, dataset, {})


def build_with(tmp_path: Path, dataset: str, changes: dict[str, str | bytes | None]
               ) -> Path:
    """Write the tiny ``dataset`` folder; ``changes`` replace (or, with None, drop) files."""
    folder = tmp_path / dataset
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | bytes | None] = {**FILES[dataset], **changes}
    for name, content in files.items():
        path = folder / name
        if content is None:
            path.unlink(missing_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))
    return folder


def load(folder: Path, dataset: str, strict: bool = False) -> ImportResult:
    return load_dataset(NAMES[dataset], source=str(folder), strict=strict)


def replace_line(text: str, line: int, new: str) -> str:
    """``text`` with its 1-based ``line`` replaced by ``new`` (kept newline-terminated)."""
    rows = text.splitlines()
    rows[line - 1] = new
    return _lines(*rows)


def insert_line(text: str, line: int, new: str) -> str:
    """``text`` with ``new`` inserted so that it becomes 1-based line ``line``."""
    rows = text.splitlines()
    rows.insert(line - 1, new)
    return _lines(*rows)


def loc(path: Path | str, line: int) -> str:
    """A regex matching ``path:line:`` literally, the start of every located message."""
    return re.escape(f"{path}:{line}:")


def only_bad_row(result: ImportResult, path: Path) -> BadRow:
    """The single quarantined row of the import, checked to belong to ``path``."""
    bad = result.log.bad_rows
    assert len(bad) == 1, bad
    assert bad[0].file == str(path)
    return bad[0]


def good_event_count(dataset: str, tmp_path: Path) -> int:
    return load(build(tmp_path / "good", dataset), dataset).events.num_rows


# ---------------------------------------------------------------------------------------
# Your own files (generic CSV loader)
# ---------------------------------------------------------------------------------------


def _mapping(tmp_path: Path, events: bytes) -> ColumnMapping:
    path = tmp_path / "events.csv"
    path.write_bytes(events)
    return ColumnMapping(events=str(path), user_id="uid", item_id="sku", value="rating",
                         ts="time")


GENERIC_OK = b"uid,sku,rating,time\nu1,i1,4,1404216000\nu2,i2,5,2014-07-01T12:00:00\n"
