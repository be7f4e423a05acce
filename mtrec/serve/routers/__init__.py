"""The /v1 routes, one ``APIRouter`` per resource: request schemas in, engine calls,
response schemas out.  Adding an endpoint is a route in the resource's module (or a new
module plus one line in :data:`ROUTERS`)."""

from __future__ import annotations

from fastapi import APIRouter

from mtrec.serve.routers import events, items, ops, recommend, users

ROUTERS = (ops.router, recommend.router, items.router, users.router, events.router)


def build_router() -> APIRouter:
    router = APIRouter()
    for sub in ROUTERS:
        router.include_router(sub)
    return router
