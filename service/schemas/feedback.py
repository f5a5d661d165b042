"""Schemas of the feedback area: POST /feedback (decisions on recommended items, from a platform such as Kolibri
Studio or any client), GET /feedback and /feedback/current (what was decided) and POST /feedback/{id}/undo."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictStr

from edurank.feedback import INTERACTIONS
from edurank.service.schemas.catalog import NO_CONTROL
from edurank.service.schemas.request import MAX_ID_CHARS, Rank, RequestModel

MAX_VERSIONS = 16
MAX_CURRENT = 10_000  # most current decisions GET /feedback/current returns
NO_SPACE = r"^[^\s\x00-\x1f\x7f]+$"  # an id: the export writes a topic's items space-separated, as LECR does
Interaction = Literal[INTERACTIONS]  # type: ignore[valid-type]
# the probability and the model versions a list was shown with, alike on POST /feedback and the review page
Probability = Annotated[Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)] | None,
                        Field(description="the probability shown")]
# a model kind or version as the store keeps it: no NUL, not blank
STORED = r"^[^\x00]*[^\s\x00\x1c-\x1f][^\x00]*$"
Stored = Annotated[StrictStr, Field(max_length=MAX_ID_CHARS, pattern=STORED)]
# pydantic states the keys' pattern as patternProperties, which let other keys through: propertyNames says it
Versions = Annotated[dict[Stored, Stored | None] | None, Field(
    max_length=MAX_VERSIONS, json_schema_extra={"propertyNames": {"pattern": STORED}},
    description="the model versions that produced the list, as /recommend reports them (default: the versions "
                "served now)")]


def name_field(description: str | None = None, required: bool = False) -> Any:
    """A name: printable, at most MAX_ID_CHARS."""
    return Field(... if required else None, min_length=1, max_length=MAX_ID_CHARS, pattern=NO_CONTROL,
                 description=description)


def id_field(description: str | None = None, required: bool = False) -> Any:
    """An id: printable without whitespace, at most MAX_ID_CHARS."""
    return Field(... if required else None, min_length=1, max_length=MAX_ID_CHARS, pattern=NO_SPACE,
                 description=description)


class FeedbackDecision(RequestModel):
    topic_id: StrictStr = id_field(required=True)
    content_id: StrictStr = id_field(required=True)
    channel_id: StrictStr | None = id_field()
    decision: Interaction = Field(description="accepted, rejected, flagged (the review page's) or Studio's "
                                              "interaction types: imported, rejected, previewed, ignored, flagged; "
                                              "accepted and imported train as positives, rejected as negatives")
    who: StrictStr | None = name_field("who decided this one (default: the body's `who`)")
    rank: Rank | None = Field(None, description="the item's rank as shown (1-based)")
    probability: Probability = None
    versions: Versions = None


class FeedbackRequest(RequestModel):
    decisions: list[FeedbackDecision] = Field(min_length=1, description="at most EDURANK_MAX_FEEDBACK_ITEMS")
    who: StrictStr | None = name_field("who decided (a user name or id)")


class UndoRequest(RequestModel):
    who: StrictStr | None = name_field("who undid it")


class Recorded(BaseModel):
    ids: list[int] = Field(description="the decisions' ids, in the order sent; committed before this answer")
    recorded: int


class StoredFeedback(BaseModel):
    id: int
    topic_id: str
    content_id: str
    channel_id: str | None
    decision: str
    who: str | None
    rank: int | None
    probability: float | None
    versions: dict[str, str | None]
    source: str = Field(description="`api` (POST /feedback) or `review` (the review page)")
    at: datetime = Field(description="when it was recorded (UTC)")
    undone_at: datetime | None
    undone_by: str | None


class FeedbackList(BaseModel):
    decisions: list[StoredFeedback] = Field(description="newest first")


class Undone(BaseModel):
    id: int
    undone: bool
