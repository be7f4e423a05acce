"""RecBole atomic files: ``NAME.inter`` (user_id, item_id, rating, timestamp), ``NAME.item``
and ``NAME.user``; headers carry ``name:type``.  Used by MovieLens-100K."""

from __future__ import annotations

from pathlib import Path

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import RowError, iter_table, parse_float, require_id
from mtrec.data.sources.base import LoadContext, unix_time


def load_recbole(folder: Path, ctx: LoadContext, name: str) -> ImportResult:
    """Ratings become ``rate`` events whose value is the rating."""
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    files = []
    item_path, user_path = folder / f"{name}.item", folder / f"{name}.user"
    if item_path.is_file():
        files.append(str(item_path))
        _read_items(item_path, ctx, items)
    if user_path.is_file():
        files.append(str(user_path))
        _read_users(user_path, ctx, users)
    inter = folder / f"{name}.inter"
    files.insert(0, str(inter))
    for row in iter_table(inter, ctx.log, sep="\t", required=("user_id", "item_id"),
                          strip_types=True, progress=ctx.progress):
        with ctx.log.row(inter, row.line, row.raw):
            user = require_id(row["user_id"], "user_id")
            item = require_id(row["item_id"], "item_id")
            if items and item not in items:
                raise RowError(f"unknown item {item!r} (not in {item_path.name})")
            ts = unix_time(row["timestamp"]) if "timestamp" in row.index else None
            if "rating" in row.index:  # a declared rating must be present and numeric
                events.add(user, item, "rate", parse_float(row["rating"], "rating"), ts=ts)
            else:
                events.add(user, item, "click", ts=ts)
    return finish(ctx.dataset, events, items, users, ctx.log, files)


def _read_items(path: Path, ctx: LoadContext, items: ItemsBuilder) -> None:
    for row in iter_table(path, ctx.log, sep="\t", required=("item_id",), strip_types=True,
                          progress=ctx.progress):
        with ctx.log.row(path, row.line, row.raw):
            item = require_id(row["item_id"], "item_id")
            if item in items:
                raise RowError(f"duplicate item {item!r}")
            title = row.get("movie_title") or row.get("title")
            year = row.get("release_year")
            genres = row.get("class") or row.get("genre")
            text = ". ".join(p for p in (
                f"{title} ({year})" if year else title, genres.replace(" ", ", ")) if p)
            items.add(item, title=title, text=text,
                      category=genres.split()[0] if genres else None,
                      attributes={"year": year, "genres": genres.split()} if year or genres
                      else None)


def _read_users(path: Path, ctx: LoadContext, users: UsersBuilder) -> None:
    for row in iter_table(path, ctx.log, sep="\t", required=("user_id",), strip_types=True,
                          progress=ctx.progress):
        with ctx.log.row(path, row.line, row.raw):
            user = require_id(row["user_id"], "user_id")
            if user in users:
                raise RowError(f"duplicate user {user!r}")
            attrs: dict[str, object] = {
                k: row[k] for k in row.index if k != "user_id" and row[k]
            }
            if "age" in attrs:
                attrs["age"] = int(parse_float(str(attrs["age"]), "age"))
            users.add(user, attrs)
