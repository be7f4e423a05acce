"""``mtrec export``: a compressed bundle (ONNX text encoder, float16/int8 tables), checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mtrec.cli_common import AsJson, _emit, _kv_table, _user_errors


def export(
    bundle: Annotated[Path, typer.Option(help="Bundle directory (from `mtrec train`).")],
    out: Annotated[Path | None, typer.Option(
        help="Exported bundle directory (default: BUNDLE-export).")] = None,
    int8: Annotated[bool, typer.Option(
        "--int8", help="Quantise the text encoder to int8 (dynamic, per channel) and store "
                       "the item tables as int8 with per-row scales.")] = False,
    tables: Annotated[str | None, typer.Option(
        help="Item-table precision: float32, float16 (default) or int8.")] = None,
    as_json: AsJson = False,
) -> None:
    """Export a bundle for serving: smaller, faster, and checked against the original."""
    from mtrec.export.bundle import ExportConfig, export_bundle

    target = out or bundle.with_name(bundle.name + "-export")
    with _user_errors():
        config = ExportConfig(int8=int8, tables=tables or ("int8" if int8 else "float16"))
        record = export_bundle(bundle, target, config)
    summary = {"bundle": str(target), "text_encoder": "onnx-int8" if int8 else "onnx",
               "tables": config.tables}
    for part, figures in record["checks"]["tables"].items():
        summary[f"{part} min cosine"] = figures["min_cosine"]
    if record["text"]:
        summary.update({f"text {k}": v for k, v in record["text"]["checks"].items()})
    else:
        summary["text_encoder"] = "none (the bundle serves without one)"
    _emit({**summary, "record": record}, as_json,
          lambda: Console().print(_kv_table(f"Exported {bundle}", summary)))
