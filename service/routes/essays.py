"""POST /score-essay: validate, delegate to edurank.service.handlers.essays, return."""

from __future__ import annotations

from fastapi import APIRouter

from edurank.service.deps import MetricsDep, RegistryDep
from edurank.service.handlers import essays as logic
from edurank.service.schemas.errors import error
from edurank.service.schemas.essays import ScoreEssayRequest, ScoreEssayResponse

router = APIRouter(tags=["essays"])
ERRORS = {422: error("invalid field (named in `loc`): empty, oversized or non-text essay, too many"),
          503: error("models not loaded yet, or no essay scorer trained")}


@router.post("/score-essay", response_model=ScoreEssayResponse, responses=ERRORS)  # type: ignore[arg-type]
def score_essay(request: ScoreEssayRequest, registry: RegistryDep, metrics: MetricsDep) -> ScoreEssayResponse:
    """Six analytic trait scores (1.0-5.0) for one essay or a batch: cohesion, syntax, vocabulary,
    phraseology, grammar, conventions; each also rounded to the nearest half point."""
    return logic.score_essays(registry, request, metrics.stage)
