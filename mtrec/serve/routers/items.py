"""Items: similar items, text search, trending, and adding or re-describing items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mtrec.serve import schemas as s
from mtrec.serve.events import StoredItem
from mtrec.serve.records import NewItem
from mtrec.serve.routers.common import (
    GuardedRoute,
    K,
    ServiceDep,
    as_http,
    scoped,
    scored_items,
)

router = APIRouter(route_class=GuardedRoute)


@router.get("/similar-items", response_model=s.ItemsResponse)
def similar_items(service: ServiceDep, item_id: Annotated[str, Query(min_length=1)],
                  k: K = 10) -> s.ItemsResponse:
    with as_http():
        return scored_items(service, service.engine.similar_items(item_id, k))


@router.get("/search", response_model=s.ItemsResponse)
def search(service: ServiceDep, q: Annotated[str, Query(min_length=1, max_length=1000)],
           k: K = 10) -> s.ItemsResponse:
    with as_http():
        return scored_items(service, service.engine.search(q, k))


@router.get("/trending", response_model=s.ItemsResponse)
def trending(service: ServiceDep, scenario: str | None = None, k: K = 10) -> s.ItemsResponse:
    e = service.engine
    with as_http():
        scen = e.scenario(scenario) if scenario is not None else None
        hits = e.trending_items(scen, k)
    return scored_items(service, hits)


@router.post("/items", response_model=s.ItemsWritten, **scoped("write:items"))
def items(body: s.ItemsRequest, service: ServiceDep) -> s.ItemsWritten:
    new = [NewItem(i.item_id, i.text, i.category) for i in body.items]
    e = service.engine
    with as_http():
        e.check_can_add_items()
        if service.log is None:
            codes = e.upsert_items(new)
        else:  # stored first; every worker (this one included) applies it from the log
            vectors = e.embed([i.text for i in new])  # stored too: encoded only here
            service.log.put_items([StoredItem(i.item_id, i.text, i.category, v, e.encoder_key)
                                   for i, v in zip(new, vectors, strict=True)])
            service.sync(force=True)
            codes = e.codes([i.item_id for i in new]).tolist()
    return s.ItemsWritten(written=len(codes), codes=codes)
