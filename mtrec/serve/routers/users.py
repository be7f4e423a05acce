"""Users: some known ids, a user's history, similar users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mtrec.data.schema import BEHAVIORS
from mtrec.serve import schemas as s
from mtrec.serve.routers.common import GuardedRoute, K, ServiceDep, as_http, scoped

router = APIRouter(route_class=GuardedRoute)


@router.get("/users", response_model=s.UsersResponse, **scoped("read"))
def users(service: ServiceDep,
          limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> s.UsersResponse:
    # some known user ids (score = how many interactions), for pickers
    e = service.engine
    ids = list(e.rec.catalog.user_ids[:limit])
    return s.UsersResponse(users=[s.ScoredUser(user_id=str(u), score=len(e.history(str(u))))
                                  for u in ids])


@router.get("/users/{user_id}/history", response_model=s.HistoryResponse, **scoped("read"))
def history(user_id: str, service: ServiceDep) -> s.HistoryResponse:
    e = service.engine
    with as_http():
        if not e.knows_user(user_id):
            raise KeyError(f"unknown user {user_id!r}")
        steps = e.history(user_id)
    return s.HistoryResponse(user_id=user_id, items=[
        s.HistoryItem(item_id=e.item_ids[step.code], text=e.texts[step.code],
                      behaviors=[b for i, b in enumerate(BEHAVIORS) if step.bits >> i & 1],
                      ts=float(step.ts) if step.ts >= 0 else None)
        for step in steps])


@router.get("/similar-users", response_model=s.UsersResponse, **scoped("read"))
def similar_users(service: ServiceDep, user_id: Annotated[str, Query(min_length=1)],
                  k: K = 10) -> s.UsersResponse:
    with as_http():
        hits = service.engine.similar_users(user_id, k)
    return s.UsersResponse(users=[s.ScoredUser(user_id=u, score=v) for u, v in hits])
