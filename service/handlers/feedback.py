"""What the feedback routes do: decisions into the feedback store, committed before the answer; the store's
history and current decisions out. The store opens at start-up, apart from the models (feedback is taken while
they load or after they failed); one that cannot open is retried by a later request, at most every
RETRY_SECONDS, so a database that comes back needs no restart. Database errors are 503s without server paths."""

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
from edurank.service.schemas.feedback import FeedbackList, FeedbackRequest, Recorded, StoredFeedback
from edurank.service.settings import Settings

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0
OPENING = threading.Lock()  # one open at a time: requests arriving meanwhile wait for its outcome
Result = TypeVar("Result")


def open_store(state: State, settings: Settings) -> None:
    """Open the store at `settings.feedback_target` as `state.feedback`; on failure None, and the reason (without
    server paths) in `state.feedback_error`."""
    state.feedback_tried = time.monotonic()
    try:
        state.feedback, state.feedback_error = FeedbackStore.open(settings.feedback_target), None
    except StoreError as err:
        log.warning("feedback is unavailable: %s", err)
        state.feedback, state.feedback_error = None, public_message(err.problem, settings.named_paths())


def close_store(state: State) -> None:
    store, state.feedback = getattr(state, "feedback", None), None
    if store is not None:
        store.close()


def store_of(state: State) -> FeedbackStore:
    """The open store; one that failed to open is retried once RETRY_SECONDS have passed, else 503."""
    with OPENING:
        if getattr(state, "feedback", None) is None and \
                time.monotonic() - getattr(state, "feedback_tried", -math.inf) >= RETRY_SECONDS:
            open_store(state, state.settings)
    if state.feedback is None:
        raise RequestError((), f"feedback is unavailable: {state.feedback_error}", 503)
    return state.feedback


def guarded(settings: Settings, call: Callable[[], Result]) -> Result:
    """`call()`, a database failure answered 503 with the reason (its paths named by their settings)."""
    try:
        return call()
    except StoreError as err:
        log.warning("feedback: %s", err)
        raise RequestError((), f"feedback is unavailable: {public_message(err.problem, settings.named_paths())}",
                           503) from None


def record(state: State, store: FeedbackStore, request: FeedbackRequest) -> Recorded:
    """Store the decisions in one transaction. Those that give no model versions get the ones served now (none
    while the models load)."""
    settings: Settings = state.settings
    if len(request.decisions) > settings.max_feedback_items:
        raise RequestError(("decisions",), f"{len(request.decisions)} decisions; the limit is "
                                           f"{settings.max_feedback_items} per call (EDURANK_MAX_FEEDBACK_ITEMS)")
    registry = getattr(state, "registry", None)
    served = dict(registry.versions) if registry is not None else {}
    decisions = []
    for i, item in enumerate(request.decisions):
        try:
            decisions.append(Decision(item.topic_id, item.content_id, item.decision, who=item.who or request.who,
                                      rank=item.rank, probability=item.probability,
                                      versions=served if item.versions is None else item.versions, source="api",
                                      channel_id=item.channel_id))
        except InvalidDecision as err:  # what the schema lets through and a database would not keep
            raise RequestError(("decisions", i, *err.field.split(".", 1)), str(err)) from None
    ids = guarded(settings, lambda: store.record(decisions))
    return Recorded(ids=ids, recorded=len(ids))


def listed(decisions: list[StoredDecision]) -> FeedbackList:
    return FeedbackList(decisions=[StoredFeedback.model_validate(d, from_attributes=True) for d in decisions])


def history(state: State, store: FeedbackStore, topic_id: str | None, limit: int) -> FeedbackList:
    return listed(guarded(state.settings, lambda: store.history(topic_id, limit)))


def current(state: State, store: FeedbackStore, topic_id: str | None) -> FeedbackList:
    return listed(guarded(state.settings, lambda: store.current(topic_id)))


def undo(state: State, store: FeedbackStore, decision_id: int, who: str | None) -> bool:
    return guarded(state.settings, lambda: store.undo(decision_id, who))
