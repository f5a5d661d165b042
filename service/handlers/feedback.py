"""What the feedback routes do: decisions into the feedback store, committed before the answer; the store's
history and current decisions out; undo, for these routes and the review page's. The store opens at start-up,
apart from the models (feedback is taken while they load or after they failed); one that cannot open is retried
by a later request, at most every RETRY_SECONDS, so a database that comes back needs no restart. While one
request opens it, the others are answered 503 at once rather than queueing behind a database that may be down.
Database errors are 503s (values the database refuses, 422s) whose message names what failed, never the
driver's text (it may name the server's host, port and user): that goes to the log."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from starlette.datastructures import State

from edurank.feedback import Decision, FeedbackStore, InvalidDecision, StoredDecision, StoreError
from edurank.service.errors import RequestError, public_message
from edurank.service.schemas.feedback import FeedbackList, FeedbackRequest, Recorded, StoredFeedback, Undone
from edurank.service.settings import Settings

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0
OPENING = threading.Lock()  # one open at a time; held, it tells other requests to answer 503 instead of waiting
Result = TypeVar("Result")


def open_store(state: State, settings: Settings) -> None:
    """Open the store at `settings.feedback_target` as `state.feedback`; on failure None, and the reason (without
    server paths or driver text) in `state.feedback_error`."""
    state.feedback_tried = time.monotonic()
    try:
        state.feedback, state.feedback_error = FeedbackStore.open(settings.feedback_target), None
    except StoreError as err:
        log.warning("feedback is unavailable: %s", err)
        state.feedback, state.feedback_error = None, public_message(err.public, settings.named_paths())


def close_store(state: State) -> None:
    """Close the store at shutdown; `store_of` does not open it again afterwards."""
    store, state.feedback, state.feedback_closed = getattr(state, "feedback", None), None, True
    if store is not None:
        store.close()


def store_of(state: State) -> FeedbackStore:
    """The open store; one that failed to open is retried once RETRY_SECONDS have passed (by one request: the
    others meanwhile get a 503 at once), else 503."""
    if getattr(state, "feedback_closed", False):
        raise RequestError((), "feedback is unavailable: the service is shutting down", 503)
    if getattr(state, "feedback", None) is None and due(state):
        if not OPENING.acquire(blocking=False):
            raise RequestError((), "feedback is unavailable: its database is being opened; retry shortly", 503)
        try:
            if getattr(state, "feedback", None) is None and due(state) and not getattr(state, "feedback_closed", False):
                open_store(state, state.settings)
        finally:
            OPENING.release()
    store = getattr(state, "feedback", None)
    if store is None:
        raise RequestError((), f"feedback is unavailable: {state.feedback_error}", 503)
    return store


def due(state: State) -> bool:
    """Whether RETRY_SECONDS have passed since the store last failed to open."""
    return time.monotonic() - getattr(state, "feedback_tried", -math.inf) >= RETRY_SECONDS


def guarded(settings: Settings, call: Callable[[], Result]) -> Result:
    """`call()`; a database failure answered 503 (values the database refused, 422) saying what failed, the
    details logged."""
    try:
        return call()
    except StoreError as err:
        log.warning("feedback: %s", err)
        if err.refused:
            raise RequestError((), f"{err.public} (the server log has the details)") from None
        raise RequestError((), f"feedback is unavailable: {public_message(err.public, settings.named_paths())} "
                               "(the server log has the details)", 503) from None


def blank_none(who: str | None) -> str | None:
    """A name as given, or None for a blank one (the review page sends what its field holds)."""
    return who.strip() or None if who is not None else None


def record(state: State, store: FeedbackStore, request: FeedbackRequest) -> Recorded:
    """Store the decisions in one transaction. Those that give no model versions get the ones served now (none
    while the models load or the index side is off)."""
    settings: Settings = state.settings
    if len(request.decisions) > settings.max_feedback_items:
        raise RequestError(("decisions",), f"{len(request.decisions)} decisions; the limit is "
                                           f"{settings.max_feedback_items} per call (EDURANK_MAX_FEEDBACK_ITEMS)")
    registry = getattr(state, "registry", None)
    served = dict(registry.versions) if registry is not None and registry.retrieval is not None else {}
    decisions = []
    for i, item in enumerate(request.decisions):
        try:
            who = blank_none(item.who) or blank_none(request.who)  # a blank name is none, as on the review page
            decisions.append(Decision(item.topic_id, item.content_id, item.decision, who=who,
                                      rank=item.rank, probability=item.probability,
                                      versions=served if item.versions is None else item.versions, source="api",
                                      channel_id=item.channel_id))
        except InvalidDecision as err:  # what the schema lets through and a database would not keep
            raise RequestError(("decisions", i, *err.loc), str(err)) from None
    ids = guarded(settings, lambda: store.record(decisions))
    return Recorded(ids=ids, recorded=len(ids))


def listed(decisions: list[StoredDecision]) -> FeedbackList:
    return FeedbackList(decisions=[StoredFeedback.model_validate(d, from_attributes=True) for d in decisions])


def history(state: State, store: FeedbackStore, topic_id: str | None, limit: int) -> FeedbackList:
    return listed(guarded(state.settings, lambda: store.history(topic_id, limit)))


def current(state: State, store: FeedbackStore, topic_id: str | None, limit: int) -> FeedbackList:
    return listed(guarded(state.settings, lambda: store.current(topic_id, limit)))


def undo(state: State, store: FeedbackStore, decision_id: int, who: str | None) -> Undone:
    """Mark a decision undone (POST /feedback/{id}/undo and the review page's); 404 when it is unknown or
    undone already."""
    if not guarded(state.settings, lambda: store.undo(decision_id, blank_none(who))):
        raise RequestError(("decision_id",), f"no decision {decision_id} to undo: unknown or already undone", 404)
    return Undone(id=decision_id, undone=True)
