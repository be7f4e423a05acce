"""ReChorus / LRD csv files (tab-separated): ``train.csv`` (user_id, item_id, time),
``dev.csv`` and ``test.csv`` (the same plus ``neg_items``, 99 sampled negatives),
``item_meta.csv`` (category, brand, related items), ``NAME.text`` and ``NAME.item2index``.

Items are stored under their ASIN.  The dataset's own split and timestamps are kept; the
sampled negatives of each evaluation row are kept in the event's ``context``.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import Row, RowError, iter_table
from mtrec.data.sources.base import LoadContext, read_id_map, unix_time

SPLIT_FILES = (("train.csv", "train"), ("dev.csv", "valid"), ("test.csv", "test"))


def load_rechorus(folder: Path, ctx: LoadContext, name: str, behavior: str = "review"
                  ) -> ImportResult:
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    text_path, map_path = folder / f"{name}.text", folder / f"{name}.item2index"
    asin_of = read_id_map(map_path, ctx)
    for row in iter_table(text_path, ctx.log, sep="\t", required=("id", "text"),
                          progress=ctx.progress):
        with ctx.log.row(text_path, row.line, row.raw):
            if not row["id"]:
                raise RowError("missing id")
            items.add(row["id"], text=row["text"])
    for asin in asin_of.values():
        if asin not in items:
            items.add(asin)
    files = [str(map_path), str(text_path)]
    meta_path = folder / "item_meta.csv"
    if meta_path.is_file():
        files.append(str(meta_path))
        _read_meta(meta_path, ctx, items, asin_of)
    for file_name, split in SPLIT_FILES:
        path = folder / file_name
        files.append(str(path))
        required = ("user_id", "item_id", "time") + (("neg_items",) if split != "train" else ())
        for row in iter_table(path, ctx.log, sep="\t", required=required,
                              progress=ctx.progress):
            with ctx.log.row(path, row.line, row.raw):
                user = row["user_id"]
                if not user:
                    raise RowError("missing user_id")
                item = _asin(asin_of, row["item_id"])
                ts = unix_time(row["time"], "time")
                context = None
                if split != "train":
                    context = {"neg_items": [_asin(asin_of, i) for i in _int_list(row)]}
                users.add(user)
                events.add(user, item, behavior, ts=ts, source_split=split, context=context)
    return finish(ctx.dataset, events, items, users, ctx.log, files)


def _read_meta(path: Path, ctx: LoadContext, items: ItemsBuilder, asin_of: dict[str, str]
               ) -> None:
    for row in iter_table(path, ctx.log, sep="\t", required=("item_id",),
                          progress=ctx.progress):
        with ctx.log.row(path, row.line, row.raw):
            asin = _asin(asin_of, row["item_id"])
            relations = {}
            for col in ("r_complement", "r_substitute"):
                if row.get(col):
                    ids = _json_list(row[col], col)
                    relations[col[2:]] = [asin_of[str(i)] for i in ids if str(i) in asin_of]
            items.add(asin, category=row.get("i_category") or None,
                      brand=row.get("i_brand") or None, attributes=relations or None)


def _asin(asin_of: dict[str, str], item: str) -> str:
    try:
        return asin_of[item]
    except KeyError:
        raise RowError(f"unknown item {item!r} (not in item2index)") from None


def _int_list(row: Row) -> list[str]:
    return [str(v) for v in _json_list(row["neg_items"], "neg_items")]


def _json_list(text: str, name: str) -> list[object]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        raise RowError(f"{name} is not a list: {text[:40]!r}") from None
    if not isinstance(values, list):
        raise RowError(f"{name} is not a list: {text[:40]!r}")
    return values
