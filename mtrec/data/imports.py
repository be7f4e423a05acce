"""Import a named dataset (or your own files) into a store file."""

from __future__ import annotations

import os
from pathlib import Path

from mtrec.data.builder import ImportResult
from mtrec.data.reader import ProgressFn, RowLog
from mtrec.data.sources import get_spec
from mtrec.data.sources.base import LoadContext, data_root, resolve_source
from mtrec.data.sources.generic import ColumnMapping, load_generic
from mtrec.data.store import Store


def home(explicit: str | Path | None = None) -> Path:
    """Where stores live: ``explicit``, else ``$MTREC_HOME``, else ``./.mtrec``."""
    return Path(explicit or os.environ.get("MTREC_HOME") or ".mtrec")


def store_path(name: str, store_dir: str | Path | None = None) -> Path:
    return home(store_dir) / f"{name}.duckdb"


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    source: str | None = None,
    strict: bool = False,
    progress: ProgressFn | None = None,
    cache_dir: str | Path | None = None,
) -> ImportResult:
    """Read a named dataset into canonical tables without writing anything."""
    spec = get_spec(name)
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
) -> tuple[Path, ImportResult]:
    """Load a named dataset and write it (replacing any earlier import) to its store."""
    result = load_dataset(name, root=root, source=source, strict=strict, progress=progress,
                          cache_dir=store_dir)
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
