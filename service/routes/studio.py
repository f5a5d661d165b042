"""Kolibri Studio's recommendation contract: GET /connect, POST /embed-content, POST /embed-topics (and POST
/recommend with a `topics` body, in the recommend area). Studio joins its backend URL, whose path it drops,
with the prefix `stable`, so every route also answers under /stable (left out of the OpenAPI document).
Bodies are checked against le-utils' published schemas, then handled by edurank.service.handlers.studio."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.exceptions import RequestValidationError

from edurank.service.deps import MetricsDep, RegistryDep, RetrievalDep
from edurank.service.errors import parse_body
from edurank.service.handlers import studio as logic
from edurank.service.metrics import Metrics
from edurank.service.registry import Registry
from edurank.service.schemas.errors import error
from edurank.service.schemas.studio import (
    CONTENT_SCHEMA,
    TOPICS_SCHEMA,
    Connected,
    ContentRequest,
    EmbedContentResponse,
    EmbedTopicsResponse,
    StudioRecommendResponse,
    TopicsRequest,
)

router = APIRouter(tags=["kolibri studio"])
stable = APIRouter(prefix="/stable", include_in_schema=False)  # the same routes where Studio's client calls them
ERRORS = {422: error("the body breaks le-utils' schema or a limit (`loc` names the field)"),
          503: error("models still loading")}
OverrideThreshold = Annotated[bool | None, Query(description="Studio's flag (`True`/`False`): also return the items "
                                                             "below the tuned cut, after the kept ones, up to "
                                                             "EDURANK_STUDIO_MAX_ITEMS")]


def body_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a route whose body is checked against a le-utils schema."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline_refs(schema)}}}}


def inline_refs(schema: Any, root: Any = None) -> Any:
    """A JSON Schema with its local `$ref`s (`#/definitions/...`, `#/$defs/...`) replaced by what they point at,
    so it can sit inside an OpenAPI document (neither schema here is recursive)."""
    root = schema if root is None else root
    if isinstance(schema, dict):
        if "$ref" in schema and str(schema["$ref"]).startswith("#/"):
            target = root
            for part in schema["$ref"][2:].split("/"):
                target = target[part]
            return inline_refs({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, root)
        return {k: inline_refs(v, root) for k, v in schema.items() if k not in ("definitions", "$defs", "$id",
                                                                                 "$schema")}
    if isinstance(schema, list):
        return [inline_refs(item, root) for item in schema]
    return schema


@router.get("/connect", response_model=Connected)
@stable.get("/connect", response_model=Connected)
def connect(retrieval: RetrievalDep) -> Connected:
    """`{"status": "OK"}` once the index side serves (503 with why before): Studio's check before any other
    call."""
    return Connected()


@router.post("/embed-content", response_model=EmbedContentResponse, responses=ERRORS,  # type: ignore[arg-type]
             openapi_extra=body_of(CONTENT_SCHEMA))
@stable.post("/embed-content", response_model=EmbedContentResponse)
def embed_content(body: Annotated[Any, Body()], request: Request, registry: RegistryDep,
                  metrics: MetricsDep) -> EmbedContentResponse:
    """Add or update Studio resources in the served catalog, keyed by (channel_id, id); an older
    channel_version never overwrites a newer one. They are durable before this answers and the next
    /recommend sees them."""
    parsed = parse_body(ContentRequest, body, logic.CONTENT)
    return logic.embed_content(request.app.state, registry, parsed, metrics.stage)


@router.post("/embed-topics", response_model=EmbedTopicsResponse, responses=ERRORS,  # type: ignore[arg-type]
             openapi_extra=body_of(TOPICS_SCHEMA))
@stable.post("/embed-topics", response_model=EmbedTopicsResponse)
def embed_topics(body: Annotated[Any, Body()], registry: RegistryDep, metrics: MetricsDep) -> EmbedTopicsResponse:
    """Embed topics ahead of their /recommend (the vectors are cached)."""
    return logic.embed_topics(registry, parse_body(TopicsRequest, body, logic.TOPICS), metrics.stage)


def studio_recommend(body: Any, override_threshold: bool | None, registry: Registry,
                     metrics: Metrics) -> StudioRecommendResponse:
    """Studio's /recommend: a `topics` body, the flag in the query string."""
    response = logic.recommend(registry, parse_body(TopicsRequest, body, logic.TOPICS), bool(override_threshold),
                               metrics.stage)
    for topic in response.topics:
        metrics.items.observe(len(topic.recommendations))
    return response


@stable.post("/recommend", response_model=StudioRecommendResponse)
def recommend_stable(body: Annotated[Any, Body()], registry: RegistryDep, metrics: MetricsDep,
                     override_threshold: OverrideThreshold = None) -> StudioRecommendResponse:
    return studio_recommend(body, override_threshold, registry, metrics)


def not_for_edurank_body() -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", "override_threshold"), "type": "value_error",
                                    "msg": "only with Studio's `topics` body; edurank's body takes `threshold`"}])
