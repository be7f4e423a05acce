"""``mtrec serve``: the HTTP API and web page over a bundle (uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtrec.cli_common import _user_errors


def serve(
    bundle: Annotated[Path, typer.Option(help="Bundle directory (from `mtrec train`).")],
    store: Annotated[Path | None, typer.Option(
        help="Event store (SQLite) for posted events and items; none: writes refused.")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (share --store).")] = 1,
    api_key: Annotated[str | None, typer.Option(
        help="Key for write endpoints (default: $MTREC_API_KEY).")] = None,
    scan: Annotated[str, typer.Option(
        help="Catalog pass: half (half-precision copies, candidates re-scored in float32), "
             "int8 (int8 copies with per-row scales, re-scored the same way), float32 "
             "(exact), or auto (int8 for a bundle exported with int8 tables, else half).")
    ] = "auto",
    ann: Annotated[str, typer.Option(
        help="Index past 200,000 items: hnsw (float32 graph) or ivf (compressed codes in "
             "inverted lists, re-scored from the catalog's own rows; a fraction of the "
             "index's memory).")
    ] = "hnsw",
    codec: Annotated[str, typer.Option(
        help="The ivf index's codes: PQ<m> (m bytes per item), SQ8, SQ4, ...")] = "PQ112",
    exact_max: Annotated[int, typer.Option(
        help="Catalogs up to this many items are searched exactly; larger ones by --ann.")
    ] = 200_000,
) -> None:
    """Serve recommendations over HTTP: /v1 API, OpenAPI docs at /docs, web page at /."""
    import os

    import uvicorn

    with _user_errors():
        from mtrec import bundle as bundle_io

        meta = bundle_io.read_meta(bundle)  # a clear error now rather than in a worker
        if meta.get("export"):  # its ONNX files load now, not on the first request
            from mtrec.export.bundle import exported_encoder

            exported_encoder(bundle, meta, threads=1)
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        if scan not in ("auto", "half", "int8", "float32"):
            raise ValueError(f"--scan must be auto, half, int8 or float32, got {scan!r}")
        from mtrec.serve.index import IndexConfig

        IndexConfig(ann=ann, codec=codec, exact_max=exact_max)  # type: ignore[arg-type]
    os.environ["MTREC_SERVE_BUNDLE"] = str(bundle.resolve())
    os.environ["MTREC_SERVE_STORE"] = str(store.resolve()) if store else ""
    os.environ["MTREC_SERVE_SCAN"] = scan
    os.environ["MTREC_SERVE_ANN"], os.environ["MTREC_SERVE_CODEC"] = ann, codec
    os.environ["MTREC_SERVE_EXACT_MAX"] = str(exact_max)
    if api_key:
        os.environ["MTREC_API_KEY"] = api_key
    uvicorn.run("mtrec.serve.factory:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level="warning")
