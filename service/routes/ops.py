"""Operational routes, apart from inference: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edurank.service.deps import MetricsDep
from edurank.service.schemas.ops import Health, Ready

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=Health)
@router.head("/health", include_in_schema=False)
def health() -> Health:
    """The process is alive (models may still be loading)."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
def ready(request: Request) -> JSONResponse:
    """200 once the models and the index are loaded; 503 with the reason before that or after a failure."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        error = getattr(request.app.state, "load_error", None)
        body = Ready(ready=False, detail=error or "loading")
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Ready(ready=True, registry=registry.describe()).model_dump())


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format: requests, latencies, seconds per pipeline stage."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
