"""What every source loader shares: its context, its registry entry, and where files come from.

A loader is a function ``load(folder, ctx) -> ImportResult``.  The folder may be a
directory under the data root, an extracted archive, or a downloaded URL: see
:func:`resolve_source`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mtrec.data.builder import ImportResult
from mtrec.data.reader import DataFormatError, ProgressFn, RowError, RowLog

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3].parent / "shared" / "data"


class SourceError(ValueError):
    """A dataset name, folder, archive or URL cannot be used."""


@dataclass
class LoadContext:
    """Per-import state handed to a loader."""

    dataset: str
    log: RowLog = field(default_factory=RowLog)
    progress: ProgressFn | None = None


Loader = Callable[[Path, LoadContext], ImportResult]


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: where it lives under the data root and which loader reads it."""

    name: str
    folder: str
    marker: str
    load: Loader
    description: str
    url: str | None = None


def data_root(explicit: str | Path | None = None) -> Path:
    """The data root: ``explicit``, else ``$MTREC_DATA_DIR``, else ``../shared/data``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MTREC_DATA_DIR")
    if env:
        return Path(env)
    cwd_default = Path.cwd().parent / "shared" / "data"
    return cwd_default if cwd_default.is_dir() else DEFAULT_DATA_ROOT


def resolve_source(spec: DatasetSpec, root: Path, source: str | None, cache: Path) -> Path:
    """The folder holding ``spec``'s files.

    ``source`` may be a directory, a ``.zip``/``.tar.gz`` archive or an http(s) URL of
    one (downloaded into ``cache``).  Without it the folder under the data root is used.
    """
    if source is None:
        folder = root / spec.folder
        if not folder.is_dir():
            hint = f" or pass a URL/archive ({spec.url})" if spec.url else ""
            raise SourceError(
                f"{spec.name}: folder {folder} not found; set --data-root / MTREC_DATA_DIR{hint}"
            )
        return _find_marker(spec, folder)
    if source.startswith(("http://", "https://")):
        return _find_marker(spec, _extract(_download(source, cache), cache))
    path = Path(source)
    if path.is_dir():
        return _find_marker(spec, path)
    if path.is_file():
        return _find_marker(spec, _extract(path, cache))
    raise SourceError(f"{spec.name}: source {source} is neither a folder, an archive nor a URL")


def _find_marker(spec: DatasetSpec, folder: Path) -> Path:
    """The folder (``folder`` or below) holding one of the ``|``-separated marker files."""
    markers = spec.marker.split("|")
    if any((folder / m).is_file() for m in markers):
        return folder
    hits = sorted(p for m in markers for p in folder.rglob(m))
    if not hits:
        raise SourceError(f"{spec.name}: {folder} holds no {' or '.join(markers)}")
    return hits[0].parent


def _download(url: str, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    target = cache / f"{digest}-{name}"
    if target.is_file():
        return target
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, part.open("wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise SourceError(f"cannot download {url}: {exc}") from exc
    part.replace(target)
    return target


def _extract(archive: Path, cache: Path) -> Path:
    stamp = f"{archive.stat().st_size}-{int(archive.stat().st_mtime)}"
    target = cache / "extracted" / f"{archive.name}-{stamp}"
    if target.is_dir():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_members(archive, zf.namelist())
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        else:
            raise SourceError(f"{archive}: not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SourceError(f"{archive}: cannot extract: {exc}") from exc
    tmp.replace(target)
    return target


def _check_members(archive: Path, names: list[str]) -> None:
    for name in names:
        if name.startswith("/") or ".." in Path(name).parts:
            raise SourceError(f"{archive}: unsafe path {name!r} in archive")


def unix_time(value: str, name: str = "timestamp") -> datetime:
    """Parse unix seconds into a naive UTC datetime, or raise :class:`RowError`.

    >>> unix_time("881250949")
    datetime.datetime(1997, 12, 4, 15, 55, 49)
    """
    try:
        seconds = float(value)
    except ValueError:
        raise RowError(f"non-numeric {name}: {value!r}") from None
    if not 0 <= seconds < 4e9:
        raise RowError(f"{name} out of range: {value!r}")
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def read_id_map(path: Path, ctx: LoadContext) -> dict[str, str]:
    """Read a headerless ``external_id<TAB>index`` file into ``{index: external_id}``."""
    from mtrec.data.reader import iter_table

    out: dict[str, str] = {}
    for row in iter_table(path, ctx.log, sep="\t", required=(), header=("id", "index"),
                          progress=ctx.progress):
        with ctx.log.row(path, row.line, row.raw):
            index, ext = row["index"], row["id"]
            if not index or not ext:
                raise RowError("missing id")
            if index in out:
                raise RowError(f"duplicate index {index!r}")
            out[index] = ext
    if not out:
        raise DataFormatError(f"{path}:1: no usable rows")
    return out
