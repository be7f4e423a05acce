"""The source formats mtrec reads, by name, so that any dataset in a known layout imports
under its own name: ``mtrec data import NAME --format FORMAT --source PATH``.

A format's loader finds its files by their names in the folder (or below it); where the
layout names files after the dataset (``NAME.inter``), the prefix is read from the folder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from mtrec.data.builder import ImportResult
from mtrec.data.sources.base import DatasetSpec, LoadContext, Loader, SourceError
from mtrec.data.sources.ctr import ALI_CCP, ALIEXPRESS, CtrLayout, load_ctr
from mtrec.data.sources.movielens import load_grouplens
from mtrec.data.sources.p5 import load_p5
from mtrec.data.sources.pairs import load_pairs
from mtrec.data.sources.recbole import load_recbole
from mtrec.data.sources.rechorus import load_rechorus
from mtrec.data.sources.unisrec import load_unisrec


@dataclass(frozen=True)
class SourceFormat:
    """A file layout: the files it expects (``NAME`` is read from the folder) and its loader."""

    name: str
    description: str
    files: tuple[str, ...]
    marker: str  # a file (or glob) that locates the folder
    load: Loader

    def spec(self, dataset: str) -> DatasetSpec:
        """A one-off dataset entry for ``dataset`` in this format (no default folder)."""
        return DatasetSpec(dataset, "", self.marker, self.load,
                           f"{dataset} in the {self.name} format")


def prefix(folder: Path, suffix: str) -> str:
    """The ``NAME`` of the one ``NAME{suffix}`` file in ``folder``."""
    hits = sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))
    if len(hits) != 1:
        found = "none" if not hits else ", ".join(h + suffix for h in hits)
        raise SourceError(f"{folder}: expected exactly one NAME{suffix} file, found {found}")
    return hits[0]


def _unisrec(folder: Path, ctx: LoadContext) -> ImportResult:
    return load_unisrec(folder, ctx, prefix(folder, ".train.inter"))


def _recbole(folder: Path, ctx: LoadContext) -> ImportResult:
    return load_recbole(folder, ctx, prefix(folder, ".inter"))


def _rechorus(folder: Path, ctx: LoadContext) -> ImportResult:
    return load_rechorus(folder, ctx, prefix(folder, ".item2index"))


def _ctr(layout: CtrLayout) -> Loader:
    def load(folder: Path, ctx: LoadContext) -> ImportResult:
        name = prefix(folder, "_train_sample.csv")
        return load_ctr(folder, ctx, replace(layout, prefix=name))
    return load


FORMATS: dict[str, SourceFormat] = {f.name: f for f in (
    SourceFormat("p5", "P5 user sequences (Amazon Beauty's layout), ordered, no timestamps",
                 ("user_sequence.txt: `user item item ...` per line, oldest first",
                  "item_meta.tsv (optional): asin, title, categories"),
                 "user_sequence.txt", load_p5),
    SourceFormat("unisrec", "UniSRec atomic files with their own split (Amazon Scientific)",
                 ("NAME.text: item_id, text", "NAME.item2index, NAME.user2index",
                  "NAME.train.inter, NAME.valid.inter, NAME.test.inter: "
                  "user_id, item_id_list, item_id"),
                 "*.train.inter", _unisrec),
    SourceFormat("recbole", "RecBole atomic files (MovieLens-100K's RecBole copy)",
                 ("NAME.inter: user_id, item_id[, rating][, timestamp] (`name:type` headers)",
                  "NAME.item, NAME.user (optional)"),
                 "*.inter", _recbole),
    SourceFormat("rechorus", "ReChorus / LRD csv with timestamps and their own split "
                 "(Amazon Office)",
                 ("train.csv, dev.csv, test.csv: user_id, item_id, time[, neg_items]",
                  "NAME.text: id, text", "NAME.item2index",
                  "item_meta.csv (optional)"),
                 "*.item2index", _rechorus),
    SourceFormat("grouplens", "GroupLens' MovieLens-100K layout (the official zip)",
                 ("u.data: user, item, rating, timestamp", "u.item, u.user"),
                 "u.data", load_grouplens),
    SourceFormat("pairs", "pair files per behaviour, unordered (JData)",
                 ("count.txt: {\"user\": N, \"item\": M} (ids are 1..N and 1..M)",
                  "buy.txt, cart.txt, collect.txt: `user item` per line",
                  "validation.txt, test.txt: held-out purchases"),
                 "count.txt", load_pairs),
    SourceFormat("ali-ccp", "click/conversion csv, Ali-CCP columns (torch-rechub's sample)",
                 ("NAME_train_sample.csv, NAME_val_sample.csv, NAME_test_sample.csv: "
                  "click, purchase, user 101, item 205, scenario 301, features",),
                 "*_train_sample.csv", _ctr(ALI_CCP)),
    SourceFormat("aliexpress", "click/conversion csv, AliExpress columns "
                 "(torch-rechub's sample)",
                 ("NAME_train_sample.csv, NAME_val_sample.csv, NAME_test_sample.csv: "
                  "click, conversion, search_id, features",),
                 "*_train_sample.csv", _ctr(ALIEXPRESS)),
)}

#: not a loader here: --format generic reads events/items files through a ColumnMapping
GENERIC = ("generic", "your own CSV/TSV/Parquet events (+ items) files, canonical column "
           "names or --map", ("events.csv|.tsv|.parquet: user_id, item_id[, behavior]"
                              "[, value][, ts][, seq][, scenario][, split]",
                              "items.csv (optional): item_id[, title][, text][, category]"
                              "[, brand][, price]"))


def get_format(name: str) -> SourceFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise SourceError(f"unknown format {name!r}; known: {', '.join([*FORMATS, GENERIC[0]])}"
                          " (`mtrec data formats` lists the files each expects)") from None
