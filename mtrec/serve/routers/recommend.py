"""``/recommend`` and ``/score``: the ranking pipeline and the per-task scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from fastapi import APIRouter, Response

from mtrec.serve import schemas as s
from mtrec.serve.records import Ask, Hit
from mtrec.serve.routers.common import GuardedRoute, ServiceDep, as_http, json_response, scoped

if TYPE_CHECKING:
    from mtrec.serve.service import Service

router = APIRouter(route_class=GuardedRoute)


# The hot read routes are ``async``: they compute in the event loop (a worker computes one
# batch at a time, on one core), without two thread hops per request.
@router.post("/recommend", response_model=s.RecommendResponse, **scoped("read"))
async def recommend(body: s.RecommendRequest, service: ServiceDep) -> Response:
    with as_http():
        ask = _ask(service, body)
        # requests queued meanwhile share one pass over the catalog
        hits = await service.recommender.submit(ask)
    return json_response(_recommended(body, hits, cold=not ask.history, service=service))


@router.post("/score", response_model=s.ScoreResponse, **scoped("read"))
async def score(body: s.ScoreRequest, service: ServiceDep) -> Response:
    e = service.engine
    with as_http():
        if not e.knows_user(body.user_id):
            raise KeyError(f"unknown user {body.user_id!r}")
        history = e.history(body.user_id)
        scen = e.request_scenario(body.scenario, history)
        states = e.state(history, scen, body.user_id)
        scores = e.task_scores(states, e.codes(body.items))
    return json_response(s.ScoreResponse(user_id=body.user_id, items=body.items,
                                         scores={t: v.tolist() for t, v in scores.items()}))


def _ask(service: Service, body: s.RecommendRequest) -> Ask:
    """The pipeline request for ``body`` (no history: the cold-start stage answers)."""
    e = service.engine
    if (body.user_id is None) == (body.items is None):
        raise ValueError("give exactly one of user_id (a known user) or items (a session)")
    e.check_objective(body.objective)
    if body.items is not None:
        scen = e.scenario(body.scenario)
        history = e.session(e.codes(body.items).tolist(), scen)
    else:
        user = body.user_id or ""
        history = e.history(user) if e.knows_user(user) else []
        scen = e.request_scenario(body.scenario, history)
    exclude = (np.unique([step.code for step in history]).astype(np.int64)
               if body.exclude_seen else np.zeros(0, dtype=np.int64))
    return Ask(history, body.k, scen, body.objective, exclude, body.category,
               e.pipeline_candidates, user=body.user_id if history else None,
               scenario_given=body.scenario is not None, policy=body.policy)


def _recommended(body: s.RecommendRequest, recs: list[Hit], cold: bool,
                 service: Service) -> s.RecommendResponse:
    e = service.engine  # the explaining history items' titles: items are never removed

    def title(item: str) -> str:
        code = e.item_code.get(item)
        return e.texts[code] if code is not None else ""

    # built without validation (work a request need not do): every value is the engine's own
    # (str, float), which tests/serve check against the schema
    because, item = s.Because.model_construct, s.RecommendedItem.model_construct
    return s.RecommendResponse.model_construct(user_id=body.user_id, cold_start=cold, items=[
        item(item_id=r.item_id, score=r.score, scores=r.scores, text=r.text,
             because=[because(item_id=i, similarity=v, text=title(i)) for i, v in r.because])
        for r in recs])
