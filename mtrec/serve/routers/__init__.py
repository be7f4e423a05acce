"""The /v1 routes, one ``APIRouter`` per resource: request schemas in, engine calls,
response schemas out.  Adding an endpoint is a route in the resource's module (or a new
module plus one line in :data:`ROUTERS`)."""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import compile_path

from mtrec.serve.routers import events, items, ops, recommend, review, users
from mtrec.serve.routers.common import ERRORS

ROUTERS = (ops.router, recommend.router, items.router, users.router, events.router,
           review.router)


def build_router() -> APIRouter:
    router = APIRouter(responses=ERRORS)
    for sub in ROUTERS:
        router.include_router(sub)
    return router


def route_methods(prefix: str) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each route's path (under ``prefix``) as a pattern, with its methods."""
    return [(compile_path(prefix + route.path)[0], frozenset(route.methods or ()))
            for sub in ROUTERS for route in sub.routes if isinstance(route, APIRoute)]
