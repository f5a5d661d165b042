"""Dependencies as `Annotated` aliases: the loaded registry (503 until it is ready), its index side (503 while
that is off), the metrics and the feedback store (503 while its database is unavailable)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from edurank.feedback import FeedbackStore
from edurank.service.errors import RequestError
from edurank.service.handlers.feedback import store_of
from edurank.service.metrics import Metrics
from edurank.service.registry import Registry, Retrieval


def get_registry(request: Request) -> Registry:
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        reason = getattr(request.app.state, "load_error", None) or "models are still loading"
        raise RequestError((), f"not ready: {reason}", 503)
    return registry


def get_retrieval(registry: Annotated[Registry, Depends(get_registry)]) -> Retrieval:
    """The loaded registry's index side; 503 with why while it is not served."""
    return registry.served


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_feedback(request: Request) -> FeedbackStore:
    return store_of(request.app.state)


RegistryDep = Annotated[Registry, Depends(get_registry)]
RetrievalDep = Annotated[Retrieval, Depends(get_retrieval)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback)]
