"""Events: stored durably before the answer, then applied to the users' histories."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from mtrec.serve import schemas as s
from mtrec.serve.engine import Engine
from mtrec.serve.records import Event
from mtrec.serve.routers.common import GuardedRoute, ServiceDep, as_http, scoped

router = APIRouter(route_class=GuardedRoute)


@router.post("/events", response_model=s.EventsWritten, **scoped("write:events"))
def events(body: s.EventsRequest, service: ServiceDep, request: Request) -> s.EventsWritten:
    if service.log is None:
        raise HTTPException(422, "this server was started without an event store (--store)")
    with as_http():
        batch = [_event(ev, service.engine) for ev in body.events]
    key = getattr(request.state, "key", None)
    stored = service.store_events(batch, key.name if key is not None else None)
    return s.EventsWritten(stored=stored.total(), duplicates=len(batch) - stored.total(),
                           quarantined=stored["quarantined"])


def _event(ev: s.EventIn, engine: Engine) -> Event:
    engine.codes([ev.item_id])
    engine.scenario(ev.scenario)
    return Event(ev.user_id, ev.item_id, ev.behavior, ev.scenario, ev.ts, ev.event_id)
