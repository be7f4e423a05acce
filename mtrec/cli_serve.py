"""``mtrec serve``: the HTTP API and web page over a bundle (uvicorn)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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
        help="One key with every scope (default: $MTREC_API_KEY).")] = None,
    keys: Annotated[Path | None, typer.Option(
        help="TOML file of scoped, hashed keys (`mtrec key` makes them; default: "
             "$MTREC_API_KEYS_FILE).")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        help="A Host header to serve (repeat; `*.shop.com`, `*` for any). Default: "
             "localhost, 127.0.0.1, ::1 and --host.")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="An origin whose web pages may call the API (repeat). Default: none.")] = None,
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
    burst_users: Annotated[int, typer.Option(
        help="Quarantine new users' events on an item once this many different new users "
             "hit it within an hour; 0 turns the guard off (trending weights as well).")
    ] = 20,
    user_burst: Annotated[int, typer.Option(
        help="Events a known user may get within a minute; the rest of a burst is "
             "quarantined.")] = 10,
    exact_max: Annotated[int, typer.Option(
        help="Catalogs up to this many items are searched exactly; larger ones by --ann.")
    ] = 200_000,
) -> None:
    """Serve recommendations over HTTP: /v1 API, OpenAPI docs at /docs, web page at /."""
    import uvicorn

    with _user_errors():
        from mtrec import bundle as bundle_io

        meta = bundle_io.read_meta(bundle)  # a clear error now rather than in a worker
        if meta.get("export"):  # its ONNX files load now, not on the first request
            from mtrec.export.bundle import exported_encoder

            exported_encoder(bundle, meta, threads=1)
        if burst_users == 1 or burst_users < 0:
            raise ValueError(f"--burst-users must be 0 (off) or >= 2, got {burst_users}")
        if user_burst < 1:
            raise ValueError(f"--user-burst must be >= 1, got {user_burst}")
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        if scan not in ("auto", "half", "int8", "float32"):
            raise ValueError(f"--scan must be auto, half, int8 or float32, got {scan!r}")
        from mtrec.serve.index import IndexConfig

        IndexConfig(ann=ann, codec=codec, exact_max=exact_max)  # type: ignore[arg-type]
        from mtrec.serve.keys import load_keys

        keys_file = str(keys.resolve()) if keys else os.environ.get("MTREC_API_KEYS_FILE")
        if keys_file:  # a bad file is named now, not in each worker
            load_keys(keys_file)
    if keys_file:
        os.environ["MTREC_API_KEYS_FILE"] = keys_file
    hosts = allowed_host or list(dict.fromkeys(["localhost", "127.0.0.1", "::1"] + (
        [] if host in ("0.0.0.0", "::", "") else [host])))
    os.environ["MTREC_ALLOWED_HOSTS"] = ",".join(hosts)
    os.environ["MTREC_CORS_ORIGINS"] = ",".join(cors_origin or [])
    os.environ["MTREC_SERVE_BUNDLE"] = str(bundle.resolve())
    os.environ["MTREC_SERVE_STORE"] = str(store.resolve()) if store else ""
    os.environ["MTREC_SERVE_SCAN"] = scan
    os.environ["MTREC_SERVE_ANN"], os.environ["MTREC_SERVE_CODEC"] = ann, codec
    os.environ["MTREC_SERVE_EXACT_MAX"] = str(exact_max)
    os.environ["MTREC_BURST_USERS"] = str(burst_users)
    os.environ["MTREC_USER_BURST"] = str(user_burst)
    if api_key:
        os.environ["MTREC_API_KEY"] = api_key
    with _shared_rates(workers):
        uvicorn.run("mtrec.serve.factory:app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level="warning")


@contextmanager
def _shared_rates(workers: int) -> Iterator[None]:
    """With several workers, the file their key rate limits share (removed at the end)."""
    if workers == 1:
        os.environ.pop("MTREC_RATE_FILE", None)
        yield
        return
    fd, path = tempfile.mkstemp(prefix="mtrec-rates-")
    os.close(fd)
    os.environ["MTREC_RATE_FILE"] = path
    try:
        yield
    finally:
        Path(path).unlink(missing_ok=True)


DEFAULT_TRENDING_BUDGET = 100.0


def key(
    name: Annotated[str, typer.Option(help="The key's name (logs and error messages).")],
    scopes: Annotated[str, typer.Option(
        help="Comma-separated: read, write:events, write:items, admin.")] = "read",
    rate: Annotated[float | None, typer.Option(
        help="Requests per second for this key (default: unlimited).")] = None,
    burst: Annotated[int | None, typer.Option(help="Requests at once over the rate.")] = None,
    trending_budget: Annotated[float | None, typer.Option(
        help="How much this key's events may move trending per hour (one known user's "
             "event counts 1). Default for a write:events key: 100; 0: no cap.")
    ] = None,
    file: Annotated[Path | None, typer.Option(
        help="Append the key's table to this key file (created owner-only).")] = None,
) -> None:
    """Make an API key: prints the key once (only its hash is stored) and its TOML table."""
    from mtrec.serve.keys import ApiKey, hash_key, load_keys, new_key, parse_key

    with _user_errors():
        secret = new_key()
        entry: dict[str, Any] = {"name": name, "sha256": hash_key(secret),
                                 "scopes": [s.strip() for s in scopes.split(",") if s.strip()]}
        if trending_budget is None and "write:events" in entry["scopes"]:
            trending_budget = DEFAULT_TRENDING_BUDGET  # a leaked key cannot take trending
        trending_budget = trending_budget or None  # 0: no cap
        entry.update({k: v for k, v in (("rate", rate), ("burst", burst),
                                        ("trending_budget", trending_budget)) if v is not None})
        made: ApiKey = parse_key(entry, "--name/--scopes/--rate/--burst/--trending-budget")
        if file is not None:
            if file.exists():
                load_keys(file)  # refuse to append to a broken file
                if name in {k.name for k in load_keys(file)}:
                    raise ValueError(f"key file {file} already has a key named {name!r}")
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as out:
                out.write(("\n" if out.tell() else "") + made.toml())
    typer.echo(f"key (shown once; give it in the X-API-Key header): {secret}")
    typer.echo(made.toml() if file is None else f"its hash was appended to {file}")
