"""Helpers every ``mtrec`` sub-command shares: option types, error handling, output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from mtrec.config import ConfigError
from mtrec.data.reader import DataFormatError
from mtrec.data.schema import SchemaError
from mtrec.data.sources import SourceError
from mtrec.data.split import SplitError
from mtrec.data.store import StoreError
from mtrec.export.text import ExportError
from mtrec.text.encoder import TextModelError
from mtrec.train.checkpoint import CheckpointError

USER_ERRORS = (DataFormatError, SourceError, SchemaError, StoreError, SplitError, ConfigError,
               ValueError, KeyError, TextModelError, CheckpointError, ExportError)

DataRoot = Annotated[Path | None, typer.Option(
    "--data-root",
    help="Folder holding the datasets (default: $MTREC_DATA_DIR or ../shared/data).")]
StoreDir = Annotated[Path | None, typer.Option(
    "--store-dir", help="Folder for store files (default: $MTREC_HOME or ./.mtrec).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]


def quiet_third_party(verbose: bool) -> None:
    """Silence the progress bars and advisory logs of Hugging Face libraries (for example
    the text encoder's "Loading weights" bar) unless ``verbose``."""
    if verbose:
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.enable_progress_bar()
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:  # already imported: its flags are read at import
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn expected errors into one red line and exit code 2 (no traceback)."""
    try:
        yield
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        _err().print(f"[bold red]error:[/] {escape(str(message))}", markup=True,
                     highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def _progress(description: str, total: int | None, quiet: bool
              ) -> Iterator[Callable[[int], None] | None]:
    if quiet or not sys.stderr.isatty():
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_err(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _emit(payload: dict[str, Any], as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        render()


def _kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
                              for k, v in value.items()) or "-"
        elif isinstance(value, int):
            value = f"{value:,}"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list):
            value = "; ".join(map(str, value)) or "-"
        table.add_row(key, str(value))
    return table
