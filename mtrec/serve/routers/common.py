"""What every router shares: the service dependency, the write-key check, JSON replies and
the one place engine errors become HTTP errors (``KeyError`` -> 404, ``ValueError`` ->
422)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel

from mtrec.serve import schemas as s

if TYPE_CHECKING:
    from mtrec.serve.app import ServeSettings, Service

K = Annotated[int, Query(ge=1, le=s.MAX_K)]


async def _service(request: Request) -> Service:
    """The shared service, caught up with the store (async: no thread hop per request)."""
    service: Service = request.app.state.service
    service.sync()
    return service


ServiceDep = Annotated["Service", Depends(_service)]


def json_response(body: BaseModel) -> Response:
    """``body`` serialized once (a returned Response skips FastAPI's second validation
    against ``response_model``, which still documents the route)."""
    return Response(body.model_dump_json(), media_type="application/json")


@contextmanager
def as_http() -> Iterator[None]:
    try:
        yield
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0]) if exc.args else "not found") from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def check_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Write routes need the server's API key in ``X-API-Key``."""
    settings: ServeSettings = request.app.state.settings
    if settings.api_key is None:
        raise HTTPException(401, "writes are disabled: the server has no API key "
                                 "(set MTREC_API_KEY or --api-key)")
    if not settings.key_ok(x_api_key):
        raise HTTPException(401, "missing or wrong X-API-Key header",
                            headers={"WWW-Authenticate": "X-API-Key"})


WRITER = [Depends(check_key)]


def scored_items(service: Service, hits: list[tuple[str, float]]) -> s.ItemsResponse:
    e = service.engine
    return s.ItemsResponse(items=[s.ScoredItem(item_id=i, score=v, text=e.texts[e.item_code[i]])
                                  for i, v in hits])
