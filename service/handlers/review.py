"""What the review page does, as plain functions of the registry, the feedback store and a validated request: the
catalog's topic tree, a topic's recommendations (the ten best candidates, those below the tuned cut included, so
a curator sees what the rule leaves out), the curators' decisions on them, and the login that stands in for the
API key a browser cannot send."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from starlette.datastructures import State

from edurank.feedback import Decision, FeedbackStore, InvalidDecision, StoredDecision
from edurank.reranker.decision import DecisionRule
from edurank.retriever.readable import readable_title
from edurank.service.errors import RequestError, safe_text
from edurank.service.handlers import feedback as feedback_logic
from edurank.service.handlers import recommend as recommend_logic
from edurank.service.handlers.feedback import blank_none, guarded
from edurank.service.middleware import review_token
from edurank.service.registry import Registry
from edurank.service.schemas.feedback import MAX_CURRENT
from edurank.service.schemas.recommend import RecommendedItem, RecommendRequest, Rule, TopicText
from edurank.service.schemas.review import DecisionRequest, TopicDecisions
from edurank.service.settings import Settings

SHOWN = 10  # candidates shown per topic, kept by the rule or not
HISTORY = 100  # decisions shown per topic, newest first
TEXT_ID = re.compile(r"text:[0-9a-f]{16}")  # a typed topic's id: decisions on it are kept but never train
HOME = "/review"


@dataclass(frozen=True)
class TreeNode:
    id: str
    title: str
    language: str
    has_content: bool
    children: list[TreeNode]


@dataclass(frozen=True)
class Channel:
    id: str | None
    languages: list[str]
    roots: list[TreeNode]


@dataclass(frozen=True)
class Candidate:
    rank: int
    item: RecommendedItem
    kept: bool  # whether the tuned rule returns it
    decision: StoredDecision | None


@dataclass(frozen=True)
class TopicReview:
    """Everything the topic page shows."""

    topic_id: str
    title: str
    description: str | None
    breadcrumbs: str | None
    language: str | None
    channel: str | None
    in_catalog: bool
    candidates: list[Candidate]
    rule: Rule | None
    versions: dict[str, str | None]
    history: list[StoredDecision]
    titles: dict[str, str]  # content id -> title, for the history


def topic_tree(registry: Registry) -> list[Channel]:
    """The catalog's topics as one tree per channel, roots and children in catalog order."""
    rows = registry.catalog.topics.select("id", "title", "channel", "language", "parent", "has_content").to_dicts()
    children: defaultdict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:  # the catalog loader refused dangling parents and cycles
        children[row["parent"]].append(row)

    def node(row: dict[str, Any]) -> TreeNode:
        return TreeNode(row["id"], row["title"], row["language"], bool(row["has_content"]),
                        [node(child) for child in children[row["id"]]])

    channels: dict[str | None, list[dict[str, Any]]] = {}
    for row in children[None]:
        channels.setdefault(row["channel"], []).append(row)
    languages: defaultdict[str | None, set[str]] = defaultdict(set)
    for row in rows:
        languages[row["channel"]].add(row["language"])
    return [Channel(channel, sorted(languages[channel]), [node(row) for row in roots])
            for channel, roots in channels.items()]


def text_topic_id(title: str, language: str | None) -> str:
    """The stable id of a typed topic (no catalog id): `text:` and the first 16 hex digits of the SHA-1 of its
    title and language, so the same topic typed again finds its decisions."""
    digest = hashlib.sha1(f"{title.strip()}\n{language or ''}".encode()).hexdigest()
    return f"text:{digest[:16]}"


def catalog_topic(registry: Registry, store: FeedbackStore, topic_id: str) -> TopicReview:
    row = registry.topic_rows.get(topic_id)
    if row is None:
        raise RequestError(("topic_id",), f"topic '{safe_text(topic_id, 60)}' is not in the loaded catalog", 404)
    topic = registry.catalog.topics.row(row, named=True)
    return review(registry, store, RecommendRequest(topic_id=topic_id), topic_id, topic["title"],
                  topic["description"], topic["breadcrumbs"] or None, topic["language"], topic["channel"])


def typed_topic(registry: Registry, store: FeedbackStore, title: str, description: str | None,
                language: str | None) -> TopicReview:
    """A topic typed on the page; the recommend handler checks its text and language."""
    if not title.strip():
        raise RequestError(("title",), "type the topic's title")
    description, language = description or None, language or None
    request = RecommendRequest(topic=TopicText(title=title, description=description, language=language))
    return review(registry, store, request, text_topic_id(title, language), title, description, None, language,
                  None)


def review(registry: Registry, store: FeedbackStore, request: RecommendRequest, topic_id: str, title: str,
           description: str | None, breadcrumbs: str | None, language: str | None,
           channel: str | None) -> TopicReview:
    answer = recommend_logic.recommend(registry, request.model_copy(update={"explain": True, "top_k": SHOWN}),
                                       cut=False)
    probabilities = [item.probability for item in answer.items]
    kept = len(answer.items)
    if answer.rule is not None and None not in probabilities:
        kept = DecisionRule(**answer.rule.model_dump()).count(np.asarray(probabilities, dtype=np.float64))
    current = {d.content_id: d for d in guarded(registry.settings, lambda: store.current(topic_id, MAX_CURRENT))}
    candidates = [Candidate(rank, item, rank <= kept, current.get(item.id))
                  for rank, item in enumerate(answer.items, start=1)]
    history = guarded(registry.settings, lambda: store.history(topic_id, HISTORY))
    return TopicReview(topic_id, title, description, breadcrumbs, language, channel, topic_id in registry.topic_rows,
                       candidates, answer.rule, answer.versions, history,
                       item_titles(registry, {d.content_id for d in history}, answer.items))


def item_titles(registry: Registry, ids: set[str], shown: list[RecommendedItem]) -> dict[str, str]:
    """Titles of the items a topic's history names: as shown in the list, else the catalog's made readable as
    the list's are (retriever/readable.py)."""
    titles = {item.id: item.title for item in shown}
    missing = sorted(ids - set(titles))
    if missing:
        found = registry.recommender.content.filter(pl.col("id").is_in(missing)) \
            .unique("id", keep="last", maintain_order=True).select("id", "title", "description", "text")
        titles |= {row[0]: readable_title(*row[1:]) for row in found.iter_rows()}
    return titles


def check_topic(registry: Registry, topic_id: str) -> None:
    if topic_id not in registry.topic_rows and not TEXT_ID.fullmatch(topic_id):
        raise RequestError(("topic_id",), f"topic '{safe_text(topic_id, 60)}' is neither in the loaded catalog nor "
                                          "a typed topic's `text:` id", 404)


def record(registry: Registry, store: FeedbackStore, body: DecisionRequest) -> int:
    """Store a curator's decision with the models that produced the list (as the page rendered it: a reload
    may have swapped them since); durable before the answer."""
    check_topic(registry, body.topic_id)
    if not (registry.recommender.index.items["id"] == body.content_id).any():
        raise RequestError(("content_id",), f"item '{safe_text(body.content_id, 60)}' is not in the catalog", 404)
    probability = None if body.probability is None else float(body.probability)
    try:
        decision = Decision(topic_id=body.topic_id, content_id=body.content_id, decision=body.decision,
                            who=blank_none(body.who), rank=body.rank, probability=probability,
                            versions=dict(registry.versions if body.versions is None else body.versions),
                            source="review", channel_id=body.channel_id)
    except InvalidDecision as err:
        raise RequestError(err.loc, str(err)) from None
    return guarded(registry.settings, lambda: store.record([decision]))[0]


def decisions(state: State, registry: Registry, store: FeedbackStore, topic_id: str) -> TopicDecisions:
    """What the page redraws from: the topic's current decision per item and its history (as the page shows it)."""
    check_topic(registry, topic_id)
    return TopicDecisions(topic_id=topic_id,
                          current=feedback_logic.current(state, store, topic_id, MAX_CURRENT).decisions,
                          history=feedback_logic.history(state, store, topic_id, HISTORY).decisions)


def login(settings: Settings, sent: str) -> str | None:
    """The review cookie's value, issued now, when `sent` is the API key (compared in constant time), else None."""
    if settings.api_key is None:
        return None
    key = settings.api_key.get_secret_value().encode()
    return review_token(key, int(time.time())) if hmac.compare_digest(sent.encode("utf-8", "replace"), key) else None


def next_page(value: str | None) -> str:
    """Where to go after logging in: a review page of this service (never another site), else the tree."""
    if value and (value == HOME or value.startswith(HOME + "/") or value.startswith(HOME + "?")) \
            and "\\" not in value and not any(ord(c) < 32 for c in value):
        return value
    return HOME
