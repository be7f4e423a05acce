"""GroupLens' own MovieLens-100K layout (``u.data``, ``u.item``, ``u.user``), as in the
official ``ml-100k.zip``; the same canonical tables as the RecBole atomic copy."""

from __future__ import annotations

import re
from pathlib import Path

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import RowError, iter_table, parse_float, require_id
from mtrec.data.sources.base import LoadContext, unix_time

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
ITEM_HEADER = ("item_id", "title", "release_date", "video_date", "url", *GENRES)
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def load_grouplens(folder: Path, ctx: LoadContext) -> ImportResult:
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    item_path, user_path, data_path = folder / "u.item", folder / "u.user", folder / "u.data"
    for row in iter_table(item_path, ctx.log, sep="|", required=(), header=ITEM_HEADER,
                          encoding="latin-1", progress=ctx.progress):
        with ctx.log.row(item_path, row.line, row.raw):
            match = _YEAR.search(row["title"])
            title = _YEAR.sub("", row["title"])
            year = match.group(1) if match else ""
            genres = [g for g in GENRES if row[g] == "1" and g != "unknown"]
            text = ". ".join(p for p in (f"{title} ({year})" if year else title,
                                         ", ".join(genres)) if p)
            items.add(require_id(row["item_id"], "item_id"), title=title, text=text,
                      category=genres[0] if genres else None,
                      attributes={"year": year, "genres": genres})
    for row in iter_table(user_path, ctx.log, sep="|", required=(),
                          header=("user_id", "age", "gender", "occupation", "zip_code"),
                          progress=ctx.progress):
        with ctx.log.row(user_path, row.line, row.raw):
            users.add(require_id(row["user_id"], "user_id"), {
                "age": int(parse_float(row["age"], "age")), "gender": row["gender"],
                "occupation": row["occupation"], "zip_code": row["zip_code"]})
    for row in iter_table(data_path, ctx.log, sep="\t", required=(),
                          header=("user_id", "item_id", "rating", "timestamp"),
                          progress=ctx.progress):
        with ctx.log.row(data_path, row.line, row.raw):
            item = require_id(row["item_id"], "item_id")
            if item not in items:
                raise RowError(f"unknown item {item!r} (not in u.item)")
            events.add(require_id(row["user_id"], "user_id"), item, "rate",
                       parse_float(row["rating"], "rating"), ts=unix_time(row["timestamp"]))
    files = [str(data_path), str(item_path), str(user_path)]
    return finish(ctx.dataset, events, items, users, ctx.log, files)
