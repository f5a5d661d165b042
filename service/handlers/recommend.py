"""What /recommend and /rerank do, as plain functions of the registry and a validated request; the routes
only wire them up. Limits that depend on settings are checked here and raise RequestError (HTTP 4xx)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from edurank.pipelines.recommend import Query
from edurank.service.errors import RequestError, safe_text
from edurank.service.handlers.checks import check_text
from edurank.service.handlers.embeddings import token_counts
from edurank.service.handlers.models import model_id
from edurank.service.registry import Registry
from edurank.service.schemas.recommend import (
    CohereRerankRequest,
    CohereRerankResponse,
    CohereRerankResult,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RerankedDocument,
    RerankRequest,
    RerankResponse,
    RerankScore,
    RerankUsage,
    Rule,
    TeiRank,
    TeiRerankRequest,
)
from edurank.timing import Timer, no_timer


def check_known(field: Sequence[str | int], what: str, value: str, known: frozenset[str]) -> None:
    if value not in known:
        raise RequestError(field, f"unknown {what} '{value}'; the catalog has: {', '.join(sorted(known))}")


def query_for(registry: Registry, request: RecommendRequest) -> tuple[Query, str | None]:
    """The request's topic as the pipeline's Query (catalog topic by id, or the given text)."""
    limit = registry.settings.max_text_chars
    if request.topic_id is not None:
        row = registry.topic_rows.get(request.topic_id)
        if row is None:
            raise RequestError(("topic_id",), f"topic '{safe_text(request.topic_id, 60)}' is not in the loaded "
                                              "catalog", 404)
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
    return Query(parts, request.languages, request.kinds, request.topic_id, language, request.channels,
                 request.exclude_channels), request.topic_id


def recommend(registry: Registry, request: RecommendRequest, timer: Timer = no_timer,
              cut: bool = True) -> RecommendResponse:
    """The topic's items the rule keeps; with `cut` off (the review page), its best `top_k` candidates whether the
    rule keeps them or not (`rule` still names the rule, for the caller to mark the cut)."""
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
    kept = rule if cut else dataclasses.replace(rule, threshold=0.0, max_items=top_k)
    frame = recommender.recommend([query], candidates if reranked else top_k, request.rerank, kept, top_k,
                                  timer, explain=request.explain and recommender.ranker is not None)[0]
    return RecommendResponse(
        topic_id=topic_id, items=[recommended(row) for row in frame.iter_rows(named=True)],
        reranked=reranked, rule=Rule(**rule.to_dict()) if rule and reranked else None, versions=registry.versions)


def recommended(row: dict[str, Any]) -> RecommendedItem:
    """An answer's item from the pipeline's row: its reasons' texts (the pipeline keeps which features each
    names and how they moved the score)."""
    reasons = row.pop("reasons", None)
    return RecommendedItem(**row, reasons=None if reasons is None else [r["text"] for r in reasons])


def rerank_texts(registry: Registry, query: str, texts: Sequence[str], field: str,
                 timer: Timer = no_timer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cross-encoder over (query, text) pairs, in the served batches: (order best first, calibrated
    probabilities, logits). The caller's order is the rank a rank-aware calibration reads. `field` names the
    texts in errors."""
    settings = registry.settings
    reranker = registry.reranker
    if reranker is None:
        raise RequestError((), "no reranker is loaded (train one with `edurank train reranker`)", 503)
    check_text(("query",), query, settings.max_text_chars)
    if len(texts) > settings.max_rerank_candidates:
        raise RequestError((field,), f"{len(texts)} texts; the limit is {settings.max_rerank_candidates} per call "
                                     "(EDURANK_MAX_RERANK_CANDIDATES): send them in batches of at most that")
    for i, text in enumerate(texts):
        check_text((field, i), text, settings.max_text_chars)
    items = [((query,), (text,), rank) for rank, text in enumerate(texts, start=1)]
    logits = registry.cross_encoder_logits(items, timer)
    probabilities = reranker.calibration(logits, np.arange(1, len(texts) + 1))
    return np.argsort(-probabilities, kind="stable"), probabilities, logits


def rerank(registry: Registry, request: RerankRequest, timer: Timer = no_timer) -> RerankResponse:
    order, probabilities, logits = rerank_texts(registry, request.query, request.candidates, "candidates", timer)
    return RerankResponse(scores=[RerankScore(index=int(i), probability=float(probabilities[i]),
                                              logit=float(logits[i])) for i in order], versions=registry.versions)


def rerank_tei(registry: Registry, request: TeiRerankRequest, timer: Timer = no_timer) -> list[TeiRank]:
    """text-embeddings-inference's /rerank: calibrated probabilities (or logits with raw_scores), best first."""
    order, probabilities, logits = rerank_texts(registry, request.query, request.texts, "texts", timer)
    scores = logits if request.raw_scores else probabilities
    return [TeiRank(index=int(i), score=float(scores[i]), text=request.texts[i] if request.return_text else None)
            for i in order]


def rerank_cohere(registry: Registry, request: CohereRerankRequest, timer: Timer = no_timer) -> CohereRerankResponse:
    """Cohere's /v1/rerank and /v2/rerank, Jina's and vLLM's too: calibrated probabilities as relevance scores,
    best first, cut to `top_n`. Usage counts each pair's query and document within the pair format's budgets
    (with the retriever's tokenizer: the reranker's own when it was trained from it, as the bundled one is)."""
    texts = [document if isinstance(document, str) else document.text for document in request.documents]
    order, probabilities, _ = rerank_texts(registry, request.query, texts, "documents", timer)
    kept = order[:request.top_n] if request.top_n else order
    results = [CohereRerankResult(index=int(i), relevance_score=float(probabilities[i]),
                                  document=RerankedDocument(text=texts[i]) if request.return_documents else None)
               for i in kept]
    reranker = registry.reranker
    assert reranker is not None  # rerank_texts refused the request otherwise
    query, *documents = (count - 2 for count in token_counts(registry, [request.query, *texts]))  # no specials
    budgets = reranker.format.topic_tokens - 1, reranker.format.content_tokens - 1  # as `Reranker.pairs` cuts
    tokens = sum(min(query, budgets[0]) + min(count, budgets[1]) + 3 for count in documents)  # [CLS] q [SEP] d [SEP]
    return CohereRerankResponse(id=f"rerank-{uuid.uuid4().hex}", results=results,
                                model=model_id("reranker", registry.versions["reranker"]),
                                usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens))
