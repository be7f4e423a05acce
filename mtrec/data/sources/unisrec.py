"""UniSRec atomic files: ``NAME.text`` (ASIN, text), ``NAME.item2index``, ``NAME.user2index``
and prefix-augmented ``NAME.{train,valid,test}.inter`` (``user, item_id_list, item_id``).

The dataset's own split is kept: for each user, the test row's history plus its target is
the full sequence; the target of the valid row is ``valid``, the test target is ``test``
and everything earlier is ``train``.  Histories are truncated to 50 items by the source,
so the stored counts are what the files contain (59,384 interactions for Scientific).
"""

from __future__ import annotations

from pathlib import Path

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import DataFormatError, RowError, iter_table
from mtrec.data.sources.base import LoadContext, read_id_map

INTER_COLUMNS = ("user_id", "item_id_list", "item_id")


def load_unisrec(folder: Path, ctx: LoadContext, name: str, behavior: str = "review"
                 ) -> ImportResult:
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    paths = {k: folder / f"{name}.{k}" for k in
             ("text", "item2index", "user2index", "train.inter", "valid.inter", "test.inter")}
    item_of = read_id_map(paths["item2index"], ctx)
    user_of = read_id_map(paths["user2index"], ctx)
    for row in iter_table(paths["text"], ctx.log, sep="\t", required=("item_id", "text"),
                          strip_types=True, progress=ctx.progress):
        with ctx.log.row(paths["text"], row.line, row.raw):
            if not row["item_id"]:
                raise RowError("missing item_id")
            items.add(row["item_id"], text=row["text"], **_text_fields(row["text"]))
    for asin in item_of.values():
        if asin not in items:
            items.add(asin)
    valid = _targets(paths["valid.inter"], ctx, item_of)
    # The train file is implied by the valid/test rows; it is read to check its rows and to
    # count what lies beyond the source's 50-item history window.
    train_items = _train_items(paths["train.inter"], ctx, item_of)
    test_path = paths["test.inter"]
    for row in iter_table(test_path, ctx.log, sep="\t", required=INTER_COLUMNS,
                          strip_types=True, progress=ctx.progress):
        with ctx.log.row(test_path, row.line, row.raw):
            user = _lookup(user_of, row["user_id"], "user")
            history = [_lookup(item_of, i, "item") for i in row["item_id_list"].split()]
            target = _lookup(item_of, row["item_id"], "item")
            if not history:
                raise RowError("empty item_id_list")
            if user in users:
                raise RowError(f"duplicate user {row['user_id']!r}")
            if valid.get(row["user_id"]) != row["item_id_list"].split()[-1]:
                raise RowError("valid target is not the last item of the test history")
            users.add(user)
            for item in history[:-1]:
                events.add(user, item, behavior, source_split="train")
            events.add(user, history[-1], behavior, source_split="valid")
            events.add(user, target, behavior, source_split="test")
    if not len(events):
        raise DataFormatError(f"{test_path}:1: no usable rows")
    files = [str(p) for p in paths.values()]
    stored: dict[str, set[str]] = {}
    for u, i in zip(events.cols["user_id"], events.cols["item_id"], strict=True):
        stored.setdefault(u, set()).add(i)
    beyond = sum(len(seen - stored.get(user_of.get(u, ""), set()))
                 for u, seen in train_items.items())
    notes = [f"{paths['train.inter'].name} rows checked; its prefixes are not stored twice"]
    if beyond:
        notes.append(f"{beyond} items of {paths['train.inter'].name} lie beyond the source's "
                     "50-item history window of test.inter and are not stored")
    return finish(ctx.dataset, events, items, users, ctx.log, files, notes)


def _targets(path: Path, ctx: LoadContext, item_of: dict[str, str]) -> dict[str, str]:
    """``{user: target item}`` of an inter file, every item checked against item2index."""
    out: dict[str, str] = {}
    for row in iter_table(path, ctx.log, sep="\t", required=INTER_COLUMNS, strip_types=True,
                          progress=ctx.progress):
        with ctx.log.row(path, row.line, row.raw):
            for item in (*row["item_id_list"].split(), row["item_id"]):
                _lookup(item_of, item, "item")
            if row["user_id"] in out:
                raise RowError(f"duplicate user {row['user_id']!r}")
            out[row["user_id"]] = row["item_id"]
    return out


def _train_items(path: Path, ctx: LoadContext, item_of: dict[str, str]) -> dict[str, set[str]]:
    """``{user: items}`` over the prefix rows of the train file, checked against item2index."""
    out: dict[str, set[str]] = {}
    for row in iter_table(path, ctx.log, sep="\t", required=INTER_COLUMNS, strip_types=True,
                          progress=ctx.progress):
        with ctx.log.row(path, row.line, row.raw):
            seen = {_lookup(item_of, i, "item")
                    for i in (*row["item_id_list"].split(), row["item_id"])}
            out.setdefault(row["user_id"], set()).update(seen)
    return out


def _text_fields(text: str) -> dict[str, str | None]:
    """UniSRec text is ``"title. categories. brand. "``: split it from the right.

    >>> _text_fields("GE Silicone 10.1 Oz. Tapes. Adhesives. GE. ")
    {'title': 'GE Silicone 10.1 Oz. Tapes', 'category': 'Adhesives', 'brand': 'GE'}
    """
    parts = text.strip().removesuffix(".").rsplit(". ", 2)
    if len(parts) < 3:
        return {"title": text.strip().removesuffix("."), "category": None, "brand": None}
    return {"title": parts[0], "category": parts[1] or None, "brand": parts[2] or None}


def _lookup(mapping: dict[str, str], key: str, what: str) -> str:
    try:
        return mapping[key]
    except KeyError:
        raise RowError(f"unknown {what} {key!r} (not in {what}2index)") from None
