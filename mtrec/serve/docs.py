"""What the app says about itself: the OpenAPI (the served model's tasks), the docs pages
(assets served locally), and answers for paths and methods under /v1 that no route takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from mtrec.serve.engine import Engine
from mtrec.serve.routers import route_methods
from mtrec.serve.routers.common import SCHEME


def patch_openapi(app: FastAPI, bundle: str | Path | Engine) -> None:
    """The OpenAPI declares the key header the keyed routes name, and the served model's
    tasks as the only keys of ``objective`` (the schema is per bundle; no task names when
    the bundle cannot be read yet)."""
    tasks = _tasks(bundle)
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = plain()
            spec["components"].setdefault("securitySchemes", {})[SCHEME] = {
                "type": "apiKey", "in": "header", "name": "X-API-Key",
                "description": "an API key with the scope the route needs"}
            prop = spec["components"]["schemas"]["RecommendRequest"]["properties"]["objective"]
            for variant in prop["anyOf"]:
                if variant.get("type") == "object" and tasks is not None:
                    variant["propertyNames"] = {"enum": tasks}
        return app.openapi_schema or plain()

    app.openapi = openapi  # type: ignore[method-assign]


def _tasks(bundle: str | Path | Engine) -> list[str] | None:
    if isinstance(bundle, Engine):
        return list(bundle.model.task_names)
    from mtrec import bundle as bundle_io

    try:
        return list(bundle_io.read_meta(Path(bundle))["run"]["model"]["tasks"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def unknown_routes(app: FastAPI) -> None:
    """Under /v1, a known path with another method is 405 with ``Allow``, any other path 404
    (not the web page's static files, which know GET and HEAD only)."""

    known = route_methods("/v1")

    @app.api_route("/v1/{rest:path}", include_in_schema=False,
                   methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    async def unknown(request: Request, rest: str) -> None:
        path = request.url.path
        allowed = sorted({m for pattern, methods in known if pattern.match(path)
                          for m in methods})
        if allowed:
            raise HTTPException(405, f"{request.method} is not allowed on {path}; "
                                     f"allowed: {', '.join(allowed)}",
                                headers={"Allow": ", ".join(allowed)})
        raise HTTPException(404, f"no route {path}")


def docs_pages(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc from the assets installed with the
    ``fastapi-offline`` package: no CDN, so they work on a machine without internet."""
    import importlib.util

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mtrec serve needs the fastapi-offline package for its docs "
                          "pages' assets: pip install fastapi-offline")
    assets = Path(next(iter(spec.submodule_search_locations))) / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="mtrec API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="mtrec API",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)


DESCRIPTION = """Multi-task recommendations: recommend, score, search, ingest.

Routes that read user data need an API key with the `read` scope in `X-API-Key`; writes need
`write:events` or `write:items`; `admin` has every scope.  Catalog reads (search, similar
items, trending) and `/v1/health` are open.  Every error is `{"error": ..., "detail": ...}`."""
