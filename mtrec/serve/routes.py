"""The /v1 routes: request schemas in, engine calls, response schemas out.

HTTP errors are raised here only: the engine raises ``KeyError`` (unknown id -> 404) and
``ValueError`` (a value it cannot serve -> 422).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel

from mtrec.data.schema import BEHAVIORS
from mtrec.serve import schemas as s
from mtrec.serve.engine import Ask, Event, Hit, NewItem
from mtrec.serve.events import StoredItem

if TYPE_CHECKING:
    from mtrec.serve.app import ServeSettings, Service

K = Annotated[int, Query(ge=1, le=s.MAX_K)]


async def _service(request: Request) -> Service:
    """The shared service, caught up with the store (async: no thread hop per request)."""
    service: Service = request.app.state.service
    service.sync()
    return service


def _json(body: BaseModel) -> Response:
    """``body`` serialized once (a returned Response skips FastAPI's second validation
    against ``response_model``, which still documents the route)."""
    return Response(body.model_dump_json(), media_type="application/json")


ServiceDep = Annotated["Service", Depends(_service)]


@contextmanager
def _as_http() -> Iterator[None]:
    try:
        yield
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0]) if exc.args else "not found") from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def _key_check(settings: ServeSettings) -> Callable[..., None]:
    def check(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if settings.api_key is None:
            raise HTTPException(401, "writes are disabled: the server has no API key "
                                     "(set MTREC_API_KEY or --api-key)")
        if not settings.key_ok(x_api_key):
            raise HTTPException(401, "missing or wrong X-API-Key header",
                                headers={"WWW-Authenticate": "X-API-Key"})
    return check


def build_router(settings: ServeSettings) -> APIRouter:
    router = APIRouter()
    writer = [Depends(_key_check(settings))]

    @router.get("/health", response_model=s.Health)
    def health(service: ServiceDep) -> s.Health:
        e = service.engine
        return s.Health(status="ok", items=len(e.item_ids) - 1, users=len(e.rec._user_code),
                        tasks=list(e.model.task_names),
                        events_stored=service.log.count() if service.log else 0)

    # The hot read routes are ``async``: they compute in the event loop (a worker computes
    # one batch at a time, on one core), without two thread hops per request.
    @router.post("/recommend", response_model=s.RecommendResponse)
    async def recommend(body: s.RecommendRequest, service: ServiceDep) -> Response:
        with _as_http():
            ask = _ask(service, body)
            if isinstance(ask, s.RecommendResponse):
                return _json(ask)
            # requests queued meanwhile share one pass over the catalog
            return _json(_recommended(body, await service.recommender.submit(ask)))

    @router.post("/score", response_model=s.ScoreResponse)
    async def score(body: s.ScoreRequest, service: ServiceDep) -> Response:
        e = service.engine
        with _as_http():
            if not e.knows_user(body.user_id):
                raise KeyError(f"unknown user {body.user_id!r}")
            scen = e.scenario(body.scenario)
            h, query = e.state(e.history(body.user_id), scen, body.user_id)
            scores = e.task_scores(h, query, e.codes(body.items), scen)
        return _json(s.ScoreResponse(user_id=body.user_id, items=body.items,
                                     scores={t: v.tolist() for t, v in scores.items()}))

    @router.get("/similar-items", response_model=s.ItemsResponse)
    def similar_items(service: ServiceDep, item_id: Annotated[str, Query(min_length=1)],
                      k: K = 10) -> s.ItemsResponse:
        with _as_http():
            return _items(service, service.engine.similar_items(item_id, k))

    @router.get("/similar-users", response_model=s.UsersResponse)
    def similar_users(service: ServiceDep, user_id: Annotated[str, Query(min_length=1)],
                      k: K = 10) -> s.UsersResponse:
        with _as_http():
            hits = service.engine.similar_users(user_id, k)
        return s.UsersResponse(users=[s.ScoredUser(user_id=u, score=v) for u, v in hits])

    @router.get("/search", response_model=s.ItemsResponse)
    def search(service: ServiceDep, q: Annotated[str, Query(min_length=1, max_length=1000)],
               k: K = 10) -> s.ItemsResponse:
        with _as_http():
            return _items(service, service.engine.search(q, k))

    @router.get("/trending", response_model=s.ItemsResponse)
    def trending(service: ServiceDep, scenario: str | None = None, k: K = 10) -> s.ItemsResponse:
        e = service.engine
        with _as_http():
            scen = e.scenario(scenario) if scenario is not None else None
            hits = e.trending_items(scen, k)
        return _items(service, hits)

    @router.get("/users", response_model=s.UsersResponse)
    def users(service: ServiceDep,
              limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> s.UsersResponse:
        """Some known user ids (score = how many interactions), for pickers."""
        e = service.engine
        ids = list(e.rec.catalog.user_ids[:limit])
        return s.UsersResponse(users=[s.ScoredUser(user_id=str(u), score=len(e.history(str(u))))
                                      for u in ids])

    @router.get("/users/{user_id}/history", response_model=s.HistoryResponse)
    def history(user_id: str, service: ServiceDep) -> s.HistoryResponse:
        e = service.engine
        with _as_http():
            if not e.knows_user(user_id):
                raise KeyError(f"unknown user {user_id!r}")
            codes = [step.code for step in e.history(user_id)]
        return s.HistoryResponse(user_id=user_id, items=[
            s.HistoryItem(item_id=e.item_ids[c], text=e.texts[c]) for c in codes])

    @router.post("/items", response_model=s.ItemsWritten, dependencies=writer)
    def items(body: s.ItemsRequest, service: ServiceDep) -> s.ItemsWritten:
        new = [NewItem(i.item_id, i.text, i.category) for i in body.items]
        e = service.engine
        with _as_http():
            e.check_can_add_items()
            if service.log is None:
                codes = e.upsert_items(new)
            else:  # stored first; every worker (this one included) applies it from the log
                vectors = e.embed([i.text for i in new])  # stored too: encoded only here
                service.log.put_items([StoredItem(i.item_id, i.text, i.category, v,
                                                  e.encoder_key)
                                       for i, v in zip(new, vectors, strict=True)])
                service.sync(force=True)
                codes = e.codes([i.item_id for i in new]).tolist()
        return s.ItemsWritten(written=len(codes), codes=codes)

    @router.post("/events", response_model=s.EventsWritten, dependencies=writer)
    def events(body: s.EventsRequest, service: ServiceDep) -> s.EventsWritten:
        if service.log is None:
            raise HTTPException(422, "this server was started without an event store (--store)")
        e = service.engine
        with _as_http():
            batch = [_event(ev, e) for ev in body.events]
        stored = service.log.append(batch)  # durable before the 2xx
        service.sync(force=True)
        return s.EventsWritten(stored=stored, duplicates=len(batch) - stored)

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus text format: requests by route and status, latency histograms."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(request.app.state.telemetry.registry),
                        media_type=CONTENT_TYPE_LATEST)

    return router


def _event(ev: s.EventIn, engine: Any) -> Event:
    if ev.behavior not in BEHAVIORS:
        raise ValueError(f"unknown behavior {ev.behavior!r}; known: {', '.join(BEHAVIORS)}")
    engine.codes([ev.item_id])
    engine.scenario(ev.scenario)
    return Event(ev.user_id, ev.item_id, ev.behavior, ev.scenario, ev.ts, ev.event_id)


def _items(service: Service, hits: list[tuple[str, float]]) -> s.ItemsResponse:
    e = service.engine
    return s.ItemsResponse(items=[s.ScoredItem(item_id=i, score=v, text=e.texts[e.item_code[i]])
                                  for i, v in hits])


def _ask(service: Service, body: s.RecommendRequest) -> Ask | s.RecommendResponse:
    """The engine request for ``body``, or the cold-start answer when there is no history."""
    e = service.engine
    if (body.user_id is None) == (body.items is None):
        raise ValueError("give exactly one of user_id (a known user) or items (a session)")
    scen = e.scenario(body.scenario)
    e.check_objective(body.objective)
    if body.items is not None:
        history = e.session(e.codes(body.items).tolist(), scen)
    else:
        user = body.user_id or ""
        history = e.history(user) if e.knows_user(user) else []
    if not history:  # unknown user or empty session: what is trending here
        hits = e.trending_items(scen if body.scenario is not None else None, body.k)
        return s.RecommendResponse(user_id=body.user_id, cold_start=True, items=[
            s.RecommendedItem(item_id=i, score=v, scores={}, text=e.texts[e.item_code[i]],
                              because=[]) for i, v in hits])
    exclude = (np.unique([step.code for step in history]) if body.exclude_seen
               else np.zeros(0, dtype=np.int64))
    return Ask(history, body.k, scen, body.objective, exclude, body.category,
               user=body.user_id)


def _recommended(body: s.RecommendRequest, recs: list[Hit]) -> s.RecommendResponse:
    return s.RecommendResponse(user_id=body.user_id, cold_start=False, items=[
        s.RecommendedItem(item_id=r.item_id, score=r.score, scores=r.scores, text=r.text,
                          because=[s.Because(item_id=i, similarity=v) for i, v in r.because])
        for r in recs])
