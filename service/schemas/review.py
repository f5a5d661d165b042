"""Schemas of the review area: the decision the review page's script sends, and the topic's decisions it reads back
to redraw itself (stored decisions, undo and its answer are the feedback area's shapes)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictStr

from edurank.service.schemas.feedback import Probability, StoredFeedback, Versions, id_field, name_field
from edurank.service.schemas.request import Rank, RequestModel


class DecisionRequest(RequestModel):
    """A curator's verdict on an item as the page showed it."""

    topic_id: StrictStr = id_field("a catalog topic, or the `text:` id the page gives a typed topic", required=True)
    content_id: StrictStr = id_field(required=True)
    channel_id: StrictStr | None = id_field()
    decision: Literal["accepted", "rejected", "flagged"] = Field(
        description="accepted trains as a positive, rejected as a negative, flagged (a second look) never trains")
    rank: Rank = Field(description="the item's rank as shown (1-based)")
    probability: Probability = None
    who: StrictStr | None = name_field("the reviewer (blank: none)")
    versions: Versions = None


class TopicDecisions(BaseModel):
    topic_id: str
    current: list[StoredFeedback] = Field(description="per item, its latest verdict not undone (else its latest "
                                                      "preview or ignore)")
    history: list[StoredFeedback] = Field(description="the latest 100 decisions, undone ones included, newest first")
