"""Import a named dataset (or your own files) into a store file."""

from __future__ import annotations

import os
from pathlib import Path

from mtrec.data.builder import ImportResult
from mtrec.data.multi_source import SEPARATOR
from mtrec.data.reader import ProgressFn, RowLog
from mtrec.data.sources import DATASETS, get_spec
from mtrec.data.sources.base import DatasetSpec, LoadContext, SourceError, data_root, resolve_source
from mtrec.data.sources.formats import get_format
from mtrec.data.sources.generic import ColumnMapping, load_generic
from mtrec.data.store import Store, StoreError


def home(explicit: str | Path | None = None) -> Path:
    """Where stores live: ``explicit``, else ``$MTREC_HOME``, else ``./.mtrec``."""
    return Path(explicit or os.environ.get("MTREC_HOME") or ".mtrec")


def store_path(name: str, store_dir: str | Path | None = None) -> Path:
    return home(store_dir) / f"{name}.duckdb"


def find_store(name: str, store_dir: str | Path | None = None,
               root: str | Path | None = None) -> Path:
    """The store file of dataset ``name``: a registered dataset (imported on first use), a
    dataset imported under that name into the store directory, or a store file's path."""
    path = store_path(name, store_dir)
    if path.is_file():
        return path
    if name in DATASETS:
        import_dataset(name, root=root, store_dir=store_dir)
        return path
    if Path(name).is_file():  # a store file's path, as before names were looked up
        return Path(name)
    if SEPARATOR in name:
        raise StoreError(f"{name!r} joins several datasets (a multi-source dataset, for "
                         f"`mtrec train`): it has no store of its own; give one of its parts "
                         f"({', '.join(name.split(SEPARATOR))})")
    raise StoreError(
        f"unknown dataset {name!r}: not a registered dataset ({', '.join(DATASETS)}), not "
        f"imported into {home(store_dir)} (no {path.name} there) and no store file at {name}; "
        f"if you imported it into another folder, give this command that --store-dir; "
        f"else import it with `mtrec data import {name} ...`")


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    source: str | None = None,
    strict: bool = False,
    progress: ProgressFn | None = None,
    cache_dir: str | Path | None = None,
    source_format: str | None = None,
) -> ImportResult:
    """Read a dataset into canonical tables without writing anything: a registered one, or
    any name with ``source_format`` (see :mod:`mtrec.data.sources.formats`) and its ``source``."""
    spec: DatasetSpec
    if source_format is None:
        spec = get_spec(name)
    elif source is None:
        raise SourceError(f"--format {source_format}: give --source, the folder or archive "
                          f"holding the files of {name}")
    else:
        spec = get_format(source_format).spec(name)
    folder = resolve_source(spec, data_root(root), source, home(cache_dir) / "downloads")
    ctx = LoadContext(dataset=name, log=RowLog(strict=strict), progress=progress)
    return spec.load(folder, ctx)


def import_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    source: str | None = None,
    store_dir: str | Path | None = None,
    strict: bool = False,
    progress: ProgressFn | None = None,
    source_format: str | None = None,
) -> tuple[Path, ImportResult]:
    """Load a dataset and write it (replacing any earlier import) to its store."""
    result = load_dataset(name, root=root, source=source, strict=strict, progress=progress,
                          cache_dir=store_dir, source_format=source_format)
    path = store_path(name, store_dir)
    Store.write_import(path, result)
    return path, result


def import_files(
    name: str,
    mapping: ColumnMapping,
    *,
    store_dir: str | Path | None = None,
    strict: bool = False,
    progress: ProgressFn | None = None,
) -> tuple[Path, ImportResult]:
    """Import the user's own CSV/Parquet files described by ``mapping`` as dataset ``name``."""
    ctx = LoadContext(dataset=name, log=RowLog(strict=strict), progress=progress)
    result = load_generic(mapping, ctx)
    path = store_path(name, store_dir)
    Store.write_import(path, result)
    return path, result
