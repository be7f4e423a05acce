"""The /v1 routes, one ``APIRouter`` per resource: request schemas in, engine calls,
response schemas out.  Adding an endpoint is a route in the resource's module (or a new
module plus one line in :data:`ROUTERS`)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from mtrec.serve.routers import events, items, ops, recommend, review, users
from mtrec.serve.routers.common import ERRORS, GuardedRoute

ROUTERS = (ops.router, recommend.router, items.router, users.router, events.router,
           review.router)


def include_routes(app: FastAPI, prefix: str = "/v1") -> None:
    """Every resource's routes under ``prefix``, each router included directly (one level
    of nesting: FastAPI matches each level per request).  A route that is not a
    :class:`GuardedRoute` would skip the key check: refused here."""
    for sub in ROUTERS:
        for route in sub.routes:  # a Starlette route, websocket or nested router too
            if not isinstance(route, GuardedRoute):
                raise TypeError(f"route {getattr(route, 'path', route)} is not a GuardedRoute: "
                                "build its router with APIRouter(route_class=GuardedRoute)")
        app.include_router(sub, prefix=prefix, responses=ERRORS)


def route_methods(prefix: str) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each route's path (under ``prefix``) as a pattern, with its methods."""
    return [(compile_path(prefix + route.path)[0], frozenset(route.methods or ()))
            for sub in ROUTERS for route in sub.routes if isinstance(route, APIRoute)]
