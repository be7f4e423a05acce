"""Click/conversion csv files (Ali-CCP, AliExpress as shipped by torch-rechub): one
impression per row with ``click`` and ``purchase``/``conversion`` labels and feature columns.

Each row becomes a ``view`` event (the impression; all feature columns kept in its
``context``), plus a ``click`` and a ``purchase`` event when those labels are 1.  The files'
own train/val/test split is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import DataFormatError, RowError, iter_table, parse_float
from mtrec.data.schema import DEFAULT_SCENARIO
from mtrec.data.sources.base import LoadContext


@dataclass(frozen=True)
class CtrLayout:
    prefix: str  # file names are f"{prefix}_{split}_sample.csv"
    click: str
    purchase: str
    user: str | None  # column naming the user; None: each row is its own session
    item: str | None  # column naming the item; None: each row is its own item
    scenario: str | None = None


ALI_CCP = CtrLayout("ali_ccp", "click", "purchase", user="101", item="205", scenario="301")
ALIEXPRESS = CtrLayout("aliexpress", "click", "conversion", user="search_id", item=None)
SPLITS = (("train", "train"), ("val", "valid"), ("test", "test"))


def load_ctr(folder: Path, ctx: LoadContext, layout: CtrLayout) -> ImportResult:
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    files: list[str] = []
    for file_split, split in SPLITS:
        path = folder / f"{layout.prefix}_{file_split}_sample.csv"
        if not path.is_file():
            continue
        files.append(str(path))
        required = [c for c in (layout.click, layout.purchase, layout.user, layout.item,
                                layout.scenario) if c]
        for row in iter_table(path, ctx.log, sep=",", required=required, progress=ctx.progress):
            with ctx.log.row(path, row.line, row.raw):
                click = _label(row[layout.click], layout.click)
                purchase = _label(row[layout.purchase], layout.purchase)
                if purchase and not click:
                    raise RowError(f"{layout.purchase}=1 without click")
                user = row[layout.user] if layout.user else f"{path.stem}:{row.line}"
                item = row[layout.item] if layout.item else f"{path.stem}:{row.line}"
                if not user or not item:
                    raise RowError("missing user or item id")
                scenario = row[layout.scenario] if layout.scenario else DEFAULT_SCENARIO
                context = {k: parse_float(row[k], k) for k in row.index
                           if k not in (layout.click, layout.purchase)}
                users.add(user)
                items.add(item, scenario=scenario)
                events.add(user, item, "view", scenario=scenario, source_split=split,
                           context=context)
                if click:
                    events.add(user, item, "click", scenario=scenario, source_split=split)
                if purchase:
                    events.add(user, item, "purchase", scenario=scenario, source_split=split)
    if not files:
        raise DataFormatError(f"{folder}/{layout.prefix}_train_sample.csv:0: file not found")
    notes = [] if layout.item else ["no item id in the source: each impression is its own item"]
    return finish(ctx.dataset, events, items, users, ctx.log, files, notes, ordered=False)


def _label(value: str, name: str) -> bool:
    number = parse_float(value, name)
    if number not in (0.0, 1.0):
        raise RowError(f"label {name} must be 0 or 1, found {value!r}")
    return number == 1.0
