"""The quarantine: events held for review by the burst rule, listed, released or dropped
(``admin`` scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from mtrec.serve import schemas as s
from mtrec.serve.routers.common import GuardedRoute, ServiceDep, scoped

router = APIRouter(route_class=GuardedRoute)


@router.get("/quarantine", response_model=s.QuarantineResponse, **scoped("admin"))
def quarantine(service: ServiceDep, after: Annotated[int, Query(ge=0, le=2**53)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> s.QuarantineResponse:
    log = service.log
    if log is None:
        raise HTTPException(422, "this server was started without an event store (--store)")
    held = [s.HeldEvent(id=i, user_id=e.user_id, item_id=e.item_id, behavior=e.behavior,
                        scenario=e.scenario, ts=e.ts, event_id=e.event_id, key=e.key,
                        received=e.received, reason=e.reason or "")
            for i, e in log.quarantined(after, limit)]
    return s.QuarantineResponse(count=log.count("quarantined"), events=held)


@router.post("/quarantine/review", response_model=s.Reviewed, **scoped("admin"))
def review(body: s.ReviewRequest, service: ServiceDep) -> s.Reviewed:
    if service.log is None:
        raise HTTPException(422, "this server was started without an event store (--store)")
    done = service.log.review(body.ids, release=body.action == "release")
    service.sync(force=True)  # released events are applied at once
    return s.Reviewed(reviewed=done, not_quarantined=len(set(body.ids)) - done)
