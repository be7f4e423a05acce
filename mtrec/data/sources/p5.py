"""P5 user-sequence files: ``user_sequence.txt`` (``user item item ...`` per line, in order)
plus ``item_meta.tsv`` (``asin, title, categories``).  Used by Amazon Beauty."""

from __future__ import annotations

from pathlib import Path

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import RowError, iter_lines, iter_table
from mtrec.data.sources.base import LoadContext

SEQUENCES = "user_sequence.txt"
META = "item_meta.tsv"


def load_p5(folder: Path, ctx: LoadContext, behavior: str = "review") -> ImportResult:
    """Events keep each user's order through ``seq``; there are no timestamps."""
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    files = [str(folder / SEQUENCES)]
    notes: list[str] = []
    meta = folder / META
    if meta.is_file():
        files.append(str(meta))
        _read_meta(meta, ctx, items)
        empty = sum(1 for r in items.rows.values() if not r.get("title"))
        if empty:
            notes.append(f"{empty} items have an empty title")
    else:
        notes.append(f"{META} not found: items have no text")
    path = folder / SEQUENCES
    for line, text in iter_lines(path, ctx.log, progress=ctx.progress):
        with ctx.log.row(path, line, text):
            user, *seq = text.split()
            if not seq:
                raise RowError("user without items")
            if user in users:
                raise RowError(f"duplicate user {user!r}")
            users.add(user)
            for item in seq:
                events.add(user, item, behavior)
    return finish(ctx.dataset, events, items, users, ctx.log, files, notes)


def _read_meta(path: Path, ctx: LoadContext, items: ItemsBuilder) -> None:
    for row in iter_table(path, ctx.log, sep="\t", required=("asin", "title"),
                          progress=ctx.progress):
        with ctx.log.row(path, row.line, row.raw):
            asin = row["asin"]
            if not asin:
                raise RowError("missing asin")
            if asin in items:
                raise RowError(f"duplicate item {asin!r}")
            title = row["title"]
            categories = row.get("categories")
            # "A > B > C | A > D": the first path's leaf is the category.
            first_path = categories.split(" | ")[0] if categories else ""
            leaf = first_path.split(" > ")[-1] if first_path else None
            text = ". ".join(p for p in (title, categories.replace(" | ", ", ")) if p)
            items.add(asin, title=title, text=text, category=leaf,
                      attributes={"categories": categories} if categories else None)
