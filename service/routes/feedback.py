"""The feedback routes: POST /feedback records decisions on recommended items (a platform's, e.g. Kolibri
Studio's interaction types, or any client's), GET /feedback and GET /feedback/current read them back, POST
/feedback/{id}/undo takes one back. They need the API key whenever one is set (they write and name reviewers),
and work while the models load: they use the feedback store alone (edurank.service.handlers.feedback)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request

from edurank.service.deps import FeedbackDep
from edurank.service.handlers import feedback as logic
from edurank.service.schemas.errors import error
from edurank.service.schemas.feedback import (
    MAX_CURRENT,
    MAX_ID_CHARS,
    NO_SPACE,
    FeedbackList,
    FeedbackRequest,
    Recorded,
    Undone,
    UndoRequest,
)

router = APIRouter(prefix="/feedback", tags=["feedback"])
ERRORS = {422: error("a field is invalid (`loc` names it) or there are more than EDURANK_MAX_FEEDBACK_ITEMS"),
          503: error("the feedback database is unavailable (the reason is given)")}
TopicId = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_CHARS, pattern=NO_SPACE,
                                      description="only this topic's decisions")]


@router.post("", response_model=Recorded, responses=ERRORS)  # type: ignore[arg-type]
def record(body: FeedbackRequest, request: Request, store: FeedbackDep) -> Recorded:
    """Record decisions on recommended items; answered once they are committed to the database (a crash after
    the answer loses none). Accepted and imported items become training positives, rejected ones negatives;
    flagged, previewed and ignored are kept but never train."""
    return logic.record(request.app.state, store, body)


@router.get("", response_model=FeedbackList, responses=ERRORS)  # type: ignore[arg-type]
def history(request: Request, store: FeedbackDep, topic_id: TopicId = None,
            limit: Annotated[int, Query(ge=1, le=1000, description="most decisions returned")] = 100) -> FeedbackList:
    """Every decision, undone ones included, newest first."""
    return logic.history(request.app.state, store, topic_id, limit)


@router.get("/current", response_model=FeedbackList, responses=ERRORS)  # type: ignore[arg-type]
def current(request: Request, store: FeedbackDep, topic_id: TopicId = None,
            limit: Annotated[int, Query(ge=1, le=MAX_CURRENT, description="most decisions returned")] = 100,
            ) -> FeedbackList:
    """Per (topic, item), the latest verdict not undone (a later preview or ignore does not hide it; an item
    only previewed or ignored shows the latest of those), newest first."""
    return logic.current(request.app.state, store, topic_id, limit)


@router.post("/{decision_id}/undo", response_model=Undone,  # type: ignore[arg-type]
             responses={**ERRORS, 404: error("no such decision, or it was undone already")})
def undo(request: Request, store: FeedbackDep, decision_id: Annotated[int, Path(ge=1, lt=2**63)],
         body: Annotated[UndoRequest | None, Body()] = None) -> Undone:
    """Take a decision back: it stays in the history, marked undone, and the one before it (if any) is the
    current one again."""
    return logic.undo(request.app.state, store, decision_id, body.who if body else None)
