"""The HTTP service: ``create_app(settings, bundle, log)`` builds the FastAPI app.

The model loads in the app's start-up (``lifespan``), not at import.  Routes translate the
engine's plain exceptions to HTTP errors (``KeyError`` -> 404, ``ValueError`` -> 422);
every error body is JSON ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtrec.serve.docs import DESCRIPTION, docs_pages, patch_openapi, unknown_routes
from mtrec.serve.edges import BodyLimit, JsonCORS, TrustedHosts
from mtrec.serve.engine import Engine
from mtrec.serve.events import EventLog
from mtrec.serve.guard import GuardConfig
from mtrec.serve.index import IndexConfig
from mtrec.serve.keys import ApiKey, Keyring, all_scopes_key, load_keys
from mtrec.serve.routers import include_routes
from mtrec.serve.service import Service
from mtrec.serve.telemetry import Measure, Telemetry

WEB = Path(__file__).parent / "web"


@dataclass(frozen=True)
class ServeSettings:
    api_key: str | None = None  # one key with every scope (besides ``keys``)
    keys: tuple[ApiKey, ...] = ()  # scoped keys (serve/keys.py); none at all: keyed routes 401
    rate_file: str | None = None  # the key rate limits shared by workers (serve/ratelimit.py)
    # Host headers served (``*`` any, ``*.shop.com``); others get 400 (DNS rebinding)
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API; none: closed
    guard: GuardConfig = field(default_factory=GuardConfig)  # trending weights, quarantine
    max_body_bytes: int = 2_000_000
    torch_threads: int = 1  # per worker: latency over throughput of one request
    request_threads: int = 1  # requests computed at once per worker
    exact_max: int = 200_000  # catalogs up to this size are searched exactly
    precompute_users: bool = True  # known users' tower states at start-up (one batched pass)
    # the catalog pass (serve/scan.py); auto: int8 for a bundle exported with int8 tables,
    # else half
    scan: Literal["auto", "float32", "half", "int8"] = "auto"
    ann: Literal["hnsw", "ivf"] = "hnsw"  # past exact_max: HNSW or compressed IVF codes
    codec: str = "PQ112"  # the IVF index's codes (serve/compressed.py)

    def index_config(self, meta: dict[str, Any] | None = None) -> IndexConfig:
        """The index settings for a bundle with config ``meta`` (which resolves ``auto``)."""
        scan = self.scan
        if scan == "auto":
            tables = ((meta or {}).get("export") or {}).get("tables")
            scan = "int8" if tables == "int8" else "half"
        return IndexConfig(exact_max=self.exact_max, scan=scan, ann=self.ann,
                           codec=self.codec)

    @classmethod
    def from_env(cls, **overrides: Any) -> ServeSettings:
        values: dict[str, Any] = {"api_key": os.environ.get("MTREC_API_KEY") or None,
                                  "keys": _env_keys(),
                                  "rate_file": os.environ.get("MTREC_RATE_FILE") or None,
                                  "allowed_hosts": _env_list("MTREC_ALLOWED_HOSTS"),
                                  "cors_origins": _env_list("MTREC_CORS_ORIGINS"),
                                  "scan": os.environ.get("MTREC_SERVE_SCAN") or None,
                                  "ann": os.environ.get("MTREC_SERVE_ANN") or None,
                                  "codec": os.environ.get("MTREC_SERVE_CODEC") or None}
        exact_max = os.environ.get("MTREC_SERVE_EXACT_MAX")
        if exact_max:
            values["exact_max"] = int(exact_max)
        values["guard"] = _env_guard()
        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if v is not None})

    def keyring(self) -> Keyring:
        extra = (all_scopes_key(self.api_key),) if self.api_key else ()
        return Keyring(self.keys + extra, self.rate_file)


def _env_guard() -> GuardConfig | None:
    burst, user = os.environ.get("MTREC_BURST_USERS"), os.environ.get("MTREC_USER_BURST")
    if burst == "0":  # the guard off
        return GuardConfig(enabled=False)
    if not (burst or user):
        return None
    default = GuardConfig()
    return replace(default, burst_users=int(burst) if burst else default.burst_users,
                   user_burst=int(user) if user else default.user_burst)


def _env_list(name: str) -> tuple[str, ...] | None:
    value = os.environ.get(name)
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _env_keys() -> tuple[ApiKey, ...] | None:
    path = os.environ.get("MTREC_API_KEYS_FILE")
    return load_keys(path) if path else None


def create_app(settings: ServeSettings, bundle: str | Path | Engine,
               log: EventLog | str | Path | None = None) -> FastAPI:
    """The app over ``bundle`` (a path, loaded at start-up, or a built :class:`Engine`),
    storing events in ``log`` (an :class:`EventLog` or its file; None: events refused)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread
        import torch
        from threadpoolctl import threadpool_limits

        # One request computes at a time per worker, on one core: concurrent requests in
        # threads only fight over the GIL and the cores (run a worker per core instead).
        torch.set_num_threads(settings.torch_threads)
        threadpool_limits(settings.torch_threads)  # numpy's BLAS as well
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        from mtrec import bundle as bundle_io

        engine = bundle if isinstance(bundle, Engine) else Engine.from_bundle(
            bundle, settings.index_config(bundle_io.read_meta(Path(bundle))),
            _encoder(bundle, settings.torch_threads),
            settings.precompute_users)
        event_log = log if isinstance(log, EventLog) or log is None else EventLog(log)
        app.state.service = Service(engine, event_log, settings.guard,
                                    {k.name: k.trending_budget for k in settings.keys
                                     if k.trending_budget is not None})
        app.state.service.sync()
        engine.warm_up()
        # The start-up leaves ~400,000 objects (torch, the encoder, the catalog) that live as
        # long as the worker: a full collection traversing them took ~240 ms, a pause that
        # landed on whatever request was running.  Frozen, collections skip them.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        if event_log is not None and event_log is not log:
            event_log.close()

    app = FastAPI(title="mtrec", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, description=DESCRIPTION)
    app.state.settings, app.state.keyring = settings, settings.keyring()
    include_routes(app)
    unknown_routes(app)
    _error_handlers(app)
    patch_openapi(app, bundle)
    docs_pages(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.telemetry = Telemetry()
    app.add_middleware(Measure, telemetry=app.state.telemetry)
    if settings.cors_origins:
        app.add_middleware(JsonCORS, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], max_age=600,
                           allow_headers=["X-API-Key", "Content-Type"])
    app.add_middleware(TrustedHosts, allowed=settings.allowed_hosts)  # outermost
    if WEB.is_dir():
        app.mount("/", StaticFiles(directory=WEB, html=True), name="web")
    return app


def _encoder(bundle: str | Path, threads: int = 0) -> Any:
    """The bundle's text encoder (a distilled or fine-tuned one from the bundle itself), or
    None when it was trained without text or fine-tuned before bundles kept the tuned
    weights (new items and queries would land elsewhere)."""
    from mtrec import bundle as bundle_io

    path = Path(bundle)
    meta = bundle_io.read_meta(path)
    if meta.get("export") and meta.get("text_dim"):
        from mtrec.export.bundle import exported_encoder

        return exported_encoder(path, meta, threads)
    config = bundle_io.encoder_config(path, meta)
    if config is None:
        return None
    from mtrec.text.encoder import TextEncoder

    return TextEncoder.from_config(config)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": _reason(exc.status_code), "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}"
                 for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "detail": "; ".join(parts)[:2000]},
                            status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "internal error", "detail": type(exc).__name__},
                            status_code=500)


def _reason(code: int) -> str:
    return {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found",
            405: "method not allowed", 413: "request too large", 422: "invalid request",
            429: "too many requests"}.get(code, "error")

