"""Schemas of Kolibri Studio's recommendation contract: GET /connect, POST /embed-content, POST /embed-topics and
POST /recommend with a `topics` body (Studio's curriculum automation calls these at the root of a port).

Requests are checked first against the JSON Schemas Learning Equality publish in `le-utils` (the installed
package is the contract, never a copy; the one bound added says what the store keeps: a 64-bit channel_version),
then read into these models; responses hold exactly what Studio reads.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from le_utils.constants import embed_content_request, embed_topics_request
from pydantic import BaseModel, Field

from edurank.service.schemas.request import RequestModel

INT64 = {"minimum": -(2**63), "exclusiveMaximum": 2**63}  # both exact as floats, as OpenAPI documents keep them


def stored_versions(schema: dict[str, Any]) -> dict[str, Any]:
    """le-utils' content schema with the 64-bit bound of channel_version added (it is stored as a BIGINT)."""
    bounded = copy.deepcopy(schema)
    bounded["definitions"]["resource"]["properties"]["channel_version"].update(INT64)
    return bounded


CONTENT_SCHEMA: dict[str, Any] = stored_versions(embed_content_request.SCHEMA)  # /embed-content's body
TOPICS_SCHEMA: dict[str, Any] = embed_topics_request.SCHEMA  # /embed-topics' and Studio's /recommend's body


class Ancestor(RequestModel):
    id: str
    title: str
    description: str
    language: str | None = None
    level: int = Field(description="0: the root; the parent has the highest level")


class StudioTopic(RequestModel):
    id: str
    channel_id: str
    title: str
    description: str
    language: str
    ancestors: list[Ancestor] = Field(default_factory=list)


class TopicsRequest(RequestModel):
    topics: list[StudioTopic]
    metadata: dict[str, Any] | None = None


class StudioFile(RequestModel):
    url: str
    preset: str
    language: str | None = None


class Resource(RequestModel):
    id: str
    channel_id: str
    content_id: str
    channel_version: int = Field(ge=-(2**63), lt=2**63, description="stored as a 64-bit integer")
    title: str
    description: str
    text: str | None = None
    language: str | None = None
    files: list[StudioFile] | None = None


class ContentRequest(RequestModel):
    resources: list[Resource]
    metadata: dict[str, Any] | None = None


class Connected(BaseModel):
    status: Literal["OK"] = "OK"


class Recommendation(BaseModel):
    id: str = Field(description="the content's id (a UUID as 32 hex digits, as Studio stores node ids)")
    channel_id: str | None = Field(description="its channel (null: an item of the catalog files, which has none)")
    title: str | None = None
    description: str | None = None
    similarity: float | None = Field(None, description="calibrated probability of relevance (null: retrieval only)")
    rank: int = Field(description="1 for the best")


class TopicRecommendations(BaseModel):
    id: str = Field(description="the topic's id, as sent")
    recommendations: list[Recommendation]


class StudioRecommendResponse(BaseModel):
    topics: list[TopicRecommendations]


class EmbedContentResponse(BaseModel):
    status: Literal["OK"] = "OK"
    written: int = Field(description="resources added or updated, durable before this answer")
    stale: list[str] = Field(description="ids skipped: a newer channel_version of them is stored")
    skipped: list[str] = Field(default_factory=list, description="ids skipped: no text (title, description and text "
                                                                 "all blank)")


class EmbedTopicsResponse(BaseModel):
    status: Literal["OK"] = "OK"
    topics: int = Field(description="topics embedded; a /recommend for them reuses the vectors")
