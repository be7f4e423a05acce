"""Operations: health and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from mtrec.serve import schemas as s
from mtrec.serve.routers.common import GuardedRoute, ServiceDep

router = APIRouter(route_class=GuardedRoute)


@router.get("/health", response_model=s.Health)
def health(service: ServiceDep) -> s.Health:
    e = service.engine
    return s.Health(status="ok", items=len(e.catalog), users=len(e.rec.catalog.user_ids),
                    tasks=list(e.model.task_names),
                    events_stored=service.log.count() if service.log else 0,
                    events_quarantined=service.log.count("quarantined") if service.log else 0,
                    index=e.retrieval.next_item.kind_, scan=e.retrieval.scan.dtype,
                    policy=e.pipeline.policy is not None)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text format: requests by route and status, latency histograms."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(request.app.state.telemetry.registry),
                    media_type=CONTENT_TYPE_LATEST)
