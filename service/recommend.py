"""What /recommend and /rerank do, as plain functions of the registry and a validated request; the routes
only wire them up. Limits that depend on settings are checked here and raise RequestError (HTTP 4xx)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from edurank.timing import Timer, no_timer
from reranker.pipeline import Query
from service.errors import RequestError
from service.inference import check_text
from service.registry import Registry
from service.schemas.recommend import (
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RerankRequest,
    RerankResponse,
    RerankScore,
    Rule,
)


def check_known(field: Sequence[str | int], what: str, value: str, known: frozenset[str]) -> None:
    if value not in known:
        raise RequestError(field, f"unknown {what} '{value}'; the catalog has: {', '.join(sorted(known))}")


def query_for(registry: Registry, request: RecommendRequest) -> tuple[Query, str | None]:
    """The request's topic as the pipeline's Query (catalog topic by id, or the given text)."""
    limit = registry.settings.max_text_chars
    if request.topic_id is not None:
        row = registry.topic_rows.get(request.topic_id)
        if row is None:
            raise RequestError(("topic_id",), f"topic '{request.topic_id}' is not in the loaded catalog", 404)
        topic = registry.catalog.topics.row(row, named=True)
        parts = (topic["title"], topic["breadcrumbs"], topic["description"])
        language = topic["language"]
    else:
        assert request.topic is not None
        for name in ("title", "description", "breadcrumbs"):
            check_text(("topic", name), getattr(request.topic, name), limit)
        if request.topic.language is not None:
            check_known(("topic", "language"), "language", request.topic.language, registry.languages)
        parts = (request.topic.title, request.topic.breadcrumbs, request.topic.description)
        language = request.topic.language
    for i, language in enumerate(request.languages or []):
        check_known(("languages", i), "language", language, registry.languages)
    for i, kind in enumerate(request.kinds or []):
        check_known(("kinds", i), "kind", kind, registry.kinds)
    return Query(parts, request.languages, request.kinds, request.topic_id, language), request.topic_id


def recommend(registry: Registry, request: RecommendRequest, timer: Timer = no_timer) -> RecommendResponse:
    settings = registry.settings
    top_k = request.top_k or settings.default_top_k
    if top_k > settings.max_top_k:
        raise RequestError(("top_k",), f"{top_k} is above the limit of {settings.max_top_k}")
    candidates = request.candidates or settings.candidates
    if candidates > settings.max_candidates:
        raise RequestError(("candidates",), f"{candidates} is above the limit of {settings.max_candidates}")
    query, topic_id = query_for(registry, request)
    recommender = registry.recommender
    reranked = request.rerank and (recommender.ranker is not None or recommender.reranker is not None)
    overrides = {k: v for k, v in (("threshold", request.threshold), ("margin", request.margin)) if v is not None}
    rule = dataclasses.replace(recommender.rule, **overrides)
    # no inference slot: the retriever and the cross-encoder batch this request with the others running
    frame = recommender.recommend([query], candidates if reranked else top_k, request.rerank, rule, top_k,
                                  timer, explain=request.explain and recommender.ranker is not None)[0]
    return RecommendResponse(
        topic_id=topic_id, items=[RecommendedItem(**row) for row in frame.iter_rows(named=True)],
        reranked=reranked, rule=Rule(**rule.to_dict()) if rule and reranked else None, versions=registry.versions)


def rerank(registry: Registry, request: RerankRequest, timer: Timer = no_timer) -> RerankResponse:
    settings = registry.settings
    reranker = registry.recommender.reranker
    if reranker is None:
        raise RequestError((), "no reranker is loaded (train one with `edurank train reranker`)", 503)
    check_text(("query",), request.query, settings.max_text_chars)
    if len(request.candidates) > settings.max_rerank_candidates:
        raise RequestError(("candidates",), f"{len(request.candidates)} candidates; the limit is "
                                            f"{settings.max_rerank_candidates}")
    for i, text in enumerate(request.candidates):
        check_text(("candidates", i), text, settings.max_text_chars)
    count = len(request.candidates)
    items = [((request.query,), (text,), rank) for rank, text in enumerate(request.candidates, start=1)]
    logits = registry.recommender.score_pairs(items, timer)
    probabilities = reranker.calibration(logits, np.arange(1, count + 1))  # the caller's order as the rank
    order = np.argsort(-probabilities, kind="stable")
    return RerankResponse(scores=[RerankScore(index=int(i), probability=float(probabilities[i]),
                                              logit=float(logits[i])) for i in order], versions=registry.versions)
