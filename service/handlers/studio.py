"""What Kolibri Studio's recommendation routes do, as plain functions of the registry and a validated request.

Topics become queries through the same text builder as catalog topics (title, breadcrumbs from the ancestors
root first, description); recommendations are the second stage's candidates cut by its tuned rule, or with
`override_threshold` also those below the cut, after the kept ones, up to EDURANK_STUDIO_MAX_ITEMS.
"""

from __future__ import annotations

import uuid

import polars as pl
from jsonschema import Draft7Validator
from le_utils.constants import format_presets
from starlette.datastructures import State

from edurank.pipelines.recommend import Query
from edurank.retriever.catalog import breadcrumb_path
from edurank.service.errors import RequestError
from edurank.service.handlers import catalog
from edurank.service.registry import Registry
from edurank.service.schemas.studio import (
    CONTENT_SCHEMA,
    TOPICS_SCHEMA,
    ContentRequest,
    EmbedContentResponse,
    EmbedTopicsResponse,
    Recommendation,
    Resource,
    StudioRecommendResponse,
    StudioTopic,
    TopicRecommendations,
    TopicsRequest,
)
from edurank.timing import Timer, no_timer

CONTENT = Draft7Validator(CONTENT_SCHEMA)
TOPICS = Draft7Validator(TOPICS_SCHEMA)
UNKNOWN_LANGUAGE = "und"  # BCP 47 "undetermined": a resource sent without a language
KIND_OF_PRESET = {p.id: p.kind for p in format_presets.PRESETLIST if not (p.supplementary or p.thumbnail)}


def studio_id(value: str | None) -> str | None:
    """An id as Studio stores node and channel ids: a UUID as 32 lowercase hex digits; anything else as is."""
    if value is None:
        return None
    try:
        return uuid.UUID(value).hex
    except ValueError:
        return value


def topic_query(topic: StudioTopic) -> Query:
    """A Studio topic as the pipeline's query: breadcrumbs from its ancestors by level, root first."""
    ancestors = sorted(topic.ancestors, key=lambda a: a.level)
    return Query((topic.title or None, breadcrumb_path([a.title for a in ancestors]) or None,
                  topic.description or None), language=topic.language)


def has_text(topic: StudioTopic) -> bool:
    return bool(topic.title.strip() or topic.description.strip())


def check_topics(registry: Registry, request: TopicsRequest) -> None:
    limit = registry.settings.max_text_chars
    if len(request.topics) > registry.settings.max_topics:
        raise RequestError(("topics",), f"{len(request.topics)} topics; the limit is {registry.settings.max_topics} "
                                        "per call (EDURANK_MAX_TOPICS)")
    for i, topic in enumerate(request.topics):
        for name in ("title", "description"):
            if len(getattr(topic, name)) > limit:
                raise RequestError(("topics", i, name), f"is {len(getattr(topic, name))} characters long; the limit "
                                                        f"is {limit}")


def recommend(registry: Registry, request: TopicsRequest, override_threshold: bool,
              timer: Timer = no_timer) -> StudioRecommendResponse:
    check_topics(registry, request)
    settings, recommender = registry.settings, registry.recommender
    asked = [i for i, t in enumerate(request.topics) if has_text(t)]  # a blank title and description: nothing
    found = dict(zip(asked, recommender.scored_candidates(
        [topic_query(request.topics[i]) for i in asked], settings.candidates, True, timer), strict=True)) \
        if asked else {}
    rule = recommender.rule
    answers = []
    for i, topic in enumerate(request.topics):
        frame = found.get(i)
        if frame is None:
            answers.append(TopicRecommendations(id=topic.id, recommendations=[]))
            continue
        reranked = len(frame) > 0 and frame["probability"].null_count() == 0
        kept = rule.count(frame["probability"].to_numpy()) if reranked else min(settings.default_top_k, len(frame))
        count = max(kept, settings.studio_max_items) if override_threshold else min(kept, settings.max_top_k)
        answers.append(TopicRecommendations(id=topic.id, recommendations=[
            Recommendation(id=studio_id(row["id"]) or row["id"], channel_id=studio_id(row.get("channel_id")),
                           title=row["title"], description=row.get("description"), similarity=row["probability"],
                           rank=rank)
            for rank, row in enumerate(frame.head(min(count, len(frame))).iter_rows(named=True), start=1)]))
    return StudioRecommendResponse(topics=answers)


def embed_topics(registry: Registry, request: TopicsRequest, timer: Timer = no_timer) -> EmbedTopicsResponse:
    """Embed the topics now (kept in the recommender's cache), so their /recommend skips that step."""
    check_topics(registry, request)
    asked = [topic_query(t) for t in request.topics if has_text(t)]
    if asked:
        registry.recommender.encode(asked, timer)
    return EmbedTopicsResponse(topics=len(asked))


def resource_kind(resource: Resource) -> str | None:
    """The kind le-utils gives the resource's first main file's preset (video, document, exercise, ...)."""
    return next((KIND_OF_PRESET[f.preset] for f in resource.files or () if f.preset in KIND_OF_PRESET), None)


def embed_content(state: State, registry: Registry, request: ContentRequest,
                  timer: Timer = no_timer) -> EmbedContentResponse:
    """Add or update the resources in the served catalog; durable before the answer."""
    catalog.check_count("resources", len(request.resources), registry.settings.max_upsert_items)
    limit = registry.settings.max_text_chars
    for i, resource in enumerate(request.resources):
        for name in ("title", "description"):
            if len(getattr(resource, name)) > limit:
                raise RequestError(("resources", i, name), f"is {len(getattr(resource, name))} characters long; the "
                                                           f"limit is {limit}")
    has_text = [any((part or "").strip() for part in (r.title, r.description, r.text)) for r in request.resources]
    embedded = [r for r, text in zip(request.resources, has_text, strict=True) if text]
    skipped = [r.id for r, text in zip(request.resources, has_text, strict=True) if not text]  # nothing to embed
    if not embedded:
        return EmbedContentResponse(written=0, stale=[], skipped=skipped)
    rows = pl.DataFrame([{
        "id": r.id, "channel_id": r.channel_id, "channel_version": r.channel_version, "content_id": r.content_id,
        "title": r.title, "description": r.description or None, "text": r.text or None,
        "language": r.language or UNKNOWN_LANGUAGE, "kind": resource_kind(r)} for r in embedded],
        schema_overrides={"channel_version": pl.Int64})
    outcome = catalog.upsert(state, registry, rows, timer)
    return EmbedContentResponse(written=len(outcome.written), stale=[catalog.shown(k) for k in outcome.stale],
                                skipped=skipped)
