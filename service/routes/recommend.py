"""POST /recommend (edurank's contract, or Kolibri Studio's by its body), POST /rerank (edurank's contract),
POST /tei/rerank (text-embeddings-inference's), POST /v1/rerank and /v2/rerank (Cohere's, Jina's, vLLM's):
validate, delegate to edurank.service.handlers.recommend, return."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from edurank.service.deps import MetricsDep, RegistryDep
from edurank.service.errors import parse_body
from edurank.service.handlers import recommend as logic
from edurank.service.routes.studio import OverrideThreshold, inline_refs, not_for_edurank_body, studio_recommend
from edurank.service.schemas.errors import error
from edurank.service.schemas.recommend import (
    CohereRerankRequest,
    CohereRerankResponse,
    RecommendRequest,
    RecommendResponse,
    RerankRequest,
    RerankResponse,
    TeiRank,
    TeiRerankRequest,
)
from edurank.service.schemas.studio import TOPICS_SCHEMA, StudioRecommendResponse

router = APIRouter(tags=["recommend"])
ERRORS = {404: error("unknown topic id")}


# one route, two contracts: Studio drops any path of its backend URL, so its /recommend must share the root with
# edurank's; the body tells them apart (Studio's always has `topics`, which edurank's never takes)
RECOMMEND_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
    inline_refs(RecommendRequest.model_json_schema()), inline_refs(TOPICS_SCHEMA)]}}}}}


@router.post("/recommend", response_model=RecommendResponse | StudioRecommendResponse,  # type: ignore[arg-type]
             responses=ERRORS, openapi_extra=RECOMMEND_BODY)
def recommend(body: Annotated[Any, Body()], registry: RegistryDep, metrics: MetricsDep,
              override_threshold: OverrideThreshold = None) -> RecommendResponse | StudioRecommendResponse:
    """Content for a curriculum topic: retrieve candidates, rerank them, return those the rule keeps. With
    edurank's body, one topic by id or text; with Kolibri Studio's (`topics`, le-utils' schema), Studio's
    answer for each topic."""
    if isinstance(body, dict) and "topics" in body:
        return studio_recommend(body, override_threshold, registry, metrics)
    if override_threshold is not None:
        raise not_for_edurank_body()
    response = logic.recommend(registry, parse_body(RecommendRequest, body), metrics.stage)
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


@router.post("/v2/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True,
             responses=ERRORS)  # type: ignore[arg-type]
@router.post("/v1/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True,
             responses=ERRORS)  # type: ignore[arg-type]
def rerank_cohere(request: CohereRerankRequest, registry: RegistryDep, metrics: MetricsDep) -> CohereRerankResponse:
    """The rerank shape most clients send (the `cohere` SDK's `Client` posts to /v1/rerank, `ClientV2` to
    /v2/rerank; Jina's and vLLM's clients, LangChain, LlamaIndex): `results` best first with each document's
    calibrated probability as `relevance_score`, cut to `top_n`. Up to EDURANK_MAX_RERANK_CANDIDATES documents
    per call (64 by default; more is a 422 that says the limit)."""
    return logic.rerank_cohere(registry, request, metrics.stage)
