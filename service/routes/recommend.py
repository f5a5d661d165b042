"""POST /recommend and POST /rerank (edurank's contract), POST /tei/rerank (text-embeddings-inference's):
validate, delegate to edurank.service.handlers.recommend, return."""

from __future__ import annotations

from fastapi import APIRouter

from edurank.service.deps import MetricsDep, RegistryDep
from edurank.service.handlers import recommend as logic
from edurank.service.schemas.errors import error
from edurank.service.schemas.recommend import (
    RecommendRequest,
    RecommendResponse,
    RerankRequest,
    RerankResponse,
    TeiRank,
    TeiRerankRequest,
)

router = APIRouter(tags=["recommend"])
ERRORS = {404: error("unknown topic id")}


@router.post("/recommend", response_model=RecommendResponse, responses=ERRORS)  # type: ignore[arg-type]
def recommend(request: RecommendRequest, registry: RegistryDep, metrics: MetricsDep) -> RecommendResponse:
    """Content for a curriculum topic: retrieve candidates, rerank them, return those the rule keeps."""
    response = logic.recommend(registry, request, metrics.stage)
    metrics.items.observe(len(response.items))
    return response


@router.post("/rerank", response_model=RerankResponse, responses=ERRORS)  # type: ignore[arg-type]
def rerank(request: RerankRequest, registry: RegistryDep, metrics: MetricsDep) -> RerankResponse:
    """Calibrated relevance of your own candidate texts to a query, best first."""
    return logic.rerank(registry, request, metrics.stage)


@router.post("/tei/rerank", response_model=list[TeiRank], responses=ERRORS)  # type: ignore[arg-type]
def rerank_tei(request: TeiRerankRequest, registry: RegistryDep, metrics: MetricsDep) -> list[TeiRank]:
    """The same scores as text-embeddings-inference's /rerank returns them (point a TEI client's base URL at
    `/tei`): calibrated probabilities, or logits with `raw_scores`, best first."""
    return logic.rerank_tei(registry, request, metrics.stage)
