"""POST /classify: validate, delegate to edurank.service.handlers.classify, return."""

from __future__ import annotations

from fastapi import APIRouter

from edurank.service.deps import MetricsDep, RegistryDep
from edurank.service.handlers import classify as logic
from edurank.service.schemas.classify import ClassifyRequest, ClassifyResponse
from edurank.service.schemas.errors import error

router = APIRouter(tags=["classification"])
ERRORS = {422: error("invalid field (named in `loc`): missing, empty or oversized text, too many"),
          503: error("models not loaded yet, or no classifier trained")}


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS)  # type: ignore[arg-type]
def classify(request: ClassifyRequest, registry: RegistryDep, metrics: MetricsDep) -> ClassifyResponse:
    """The three most probable misconception labels (`Category:Misconception`) for a student's answer and
    explanation, with probabilities; a question unseen in training is still answered, flagged as such."""
    return logic.classify_responses(registry, request, metrics.stage)
