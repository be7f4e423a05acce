"""Events: stored durably before the answer, then applied to the users' histories."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from mtrec.data.schema import BEHAVIORS
from mtrec.serve import schemas as s
from mtrec.serve.engine import Engine
from mtrec.serve.records import Event
from mtrec.serve.routers.common import WRITER, ServiceDep, as_http

router = APIRouter()


@router.post("/events", response_model=s.EventsWritten, dependencies=WRITER)
def events(body: s.EventsRequest, service: ServiceDep) -> s.EventsWritten:
    if service.log is None:
        raise HTTPException(422, "this server was started without an event store (--store)")
    with as_http():
        batch = [_event(ev, service.engine) for ev in body.events]
    stored = service.log.append(batch)  # durable before the 2xx
    service.sync(force=True)
    return s.EventsWritten(stored=stored, duplicates=len(batch) - stored)


def _event(ev: s.EventIn, engine: Engine) -> Event:
    if ev.behavior not in BEHAVIORS:
        raise ValueError(f"unknown behavior {ev.behavior!r}; known: {', '.join(BEHAVIORS)}")
    engine.codes([ev.item_id])
    engine.scenario(ev.scenario)
    return Event(ev.user_id, ev.item_id, ev.behavior, ev.scenario, ev.ts, ev.event_id)
