"""What every router shares: the service dependency, the key and scope check, the documented
errors, JSON replies and the one place engine errors become HTTP errors (``KeyError`` -> 404,
``ValueError`` -> 422)."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from mtrec.serve import schemas as s
from mtrec.serve.keys import Keyring

if TYPE_CHECKING:
    from mtrec.serve.service import Service

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


def authorize(request: Request, scope: str) -> None:
    """The request's ``X-API-Key`` is a known key with ``scope`` and within its rate (401 no
    or unknown key, 403 lacking the scope, 429 over the rate); the key lands in
    ``request.state.key``."""
    ring: Keyring = request.app.state.keyring
    if not ring:
        raise HTTPException(401, f"this route needs a key with the {scope!r} scope and "
                                 "the server has none (--keys FILE or --api-key)",
                            headers=CHALLENGE)
    found = ring.find(request.headers.get("x-api-key"))
    if found is None:
        raise HTTPException(401, "missing or unknown X-API-Key header", headers=CHALLENGE)
    if not found.allows(scope):
        raise HTTPException(403, f"key {found.name!r} lacks the {scope!r} scope")
    wait = ring.wait(found)
    if wait > 0:
        raise HTTPException(429, f"key {found.name!r} is over its rate of {found.rate:g} "
                                 "requests per second",
                            headers={"Retry-After": str(max(1, math.ceil(min(wait, 1e6))))})
    request.state.key = found


class GuardedRoute(APIRoute):
    """Every /v1 route: its key check (a route declared with :func:`scoped`; one without
    is open to anyone, as the scope table of tests/serve/test_keys.py lists), then its
    query check, before FastAPI reads the body or solves a dependency.  A request without
    a key is refused whatever its body holds, and neither check costs a dependency (their
    resolution per request was most of what the keys cost under load)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scope: str | None = (self.openapi_extra or {}).get("x-scope")
        names = frozenset(_query_params(self.dependant))

        async def guarded(request: Request) -> Response:
            if scope is not None:
                authorize(request, scope)
            if request.scope.get("query_string"):
                check_query(request, names)
            return await handler(request)

        return guarded


CHALLENGE = {"WWW-Authenticate": "X-API-Key"}
SCHEME = "APIKeyHeader"  # the OpenAPI security scheme (serve/docs.py declares it)
_ERROR = {"model": s.ErrorBody}
# every route: the errors any request may get (documented with the one error body)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "a Host the server does not serve, or a body that is "
                                   "not UTF-8 JSON text"},
    404: {**_ERROR, "description": "an unknown user, item, scenario or path"},
    413: {**_ERROR, "description": "the body is over the server's limit"},
    422: {**_ERROR, "description": "the request does not fit the schema or the model"},
}
# routes with a key: also these
KEYED: dict[int | str, dict[str, Any]] = {
    401: {**_ERROR, "description": "no X-API-Key, or one the server does not know"},
    403: {**_ERROR, "description": "the key lacks the route's scope"},
    429: {**_ERROR, "description": "the key is over its rate; retry after `Retry-After` s",
          "headers": {"Retry-After": {"schema": {"type": "integer"},
                                      "description": "seconds to wait"}}},
}


def check_query(request: Request, names: frozenset[str]) -> None:
    """Query parameters the route does not take (``names``) are refused, as unknown body
    fields are: a misspelt ``?kk=5`` would otherwise be ignored without a word."""
    unknown = sorted(set(request.query_params) - names)
    if unknown:
        raise HTTPException(422, f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
                                 f"this route takes: {', '.join(sorted(names)) or 'none'}")


def _query_params(dependant: Dependant) -> Iterator[str]:
    yield from (p.alias for p in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _query_params(sub)




def scoped(scope: str) -> dict[str, Any]:
    """The route arguments of a route that needs ``scope`` (:class:`GuardedRoute` checks the
    key before anything else) and its errors."""
    return {"responses": KEYED, "openapi_extra": {"x-scope": scope, "security": [{SCHEME: []}]},
            "description": f"Needs an API key with the `{scope}` scope."}


def scored_items(service: Service, hits: list[tuple[str, float]]) -> s.ItemsResponse:
    e = service.engine
    return s.ItemsResponse(items=[s.ScoredItem(item_id=i, score=v, text=e.texts[e.item_code[i]])
                                  for i, v in hits])
