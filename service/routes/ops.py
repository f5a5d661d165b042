"""Operational routes, apart from inference: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edurank.service.deps import MetricsDep
from edurank.service.registry import RETRIEVAL
from edurank.service.schemas.ops import Health, Ready

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=Health)
@router.head("/health", include_in_schema=False)
def health() -> Health:
    """The process is alive (models may still be loading)."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
def ready(request: Request) -> JSONResponse:
    """200 once the index side (catalog, retriever, index) serves: what an operator always configures. 503
    while loading, while waiting for a first index, or when it failed, with the reason. Once loaded, the body
    says what is served and what is not (`registry.problems`: each part's reason), whatever the status."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        error = getattr(request.app.state, "load_error", None)
        return JSONResponse(Ready(ready=False, detail=error or "loading").model_dump(), status_code=503)
    served = registry.serves(RETRIEVAL)
    body = Ready(ready=served, detail=registry.problems.get(RETRIEVAL), registry=registry.describe())
    return JSONResponse(body.model_dump(), status_code=200 if served else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format: requests, latencies, seconds per pipeline stage."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
