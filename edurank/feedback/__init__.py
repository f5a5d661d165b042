"""Feedback: reviewers' and platforms' decisions on recommended items, stored durably (SQLite or PostgreSQL) and
exported as training labels. Ground layer: no model family, pipeline or service imports.

    with FeedbackStore.open("artifacts/feedback.sqlite") as store:
        store.record([Decision("topic1", "item7", "accepted", who="ana", rank=1, probability=0.91)])
        store.labels()  # topic_id, content_id, label
"""

from __future__ import annotations

from edurank.feedback.decisions import (
    INTERACTIONS,
    NEGATIVE,
    PASSIVE,
    POSITIVE,
    Decision,
    InvalidDecision,
    StoredDecision,
)
from edurank.feedback.export import export_feedback, read_labels
from edurank.feedback.store import FeedbackStore, StoreError

__all__ = ["INTERACTIONS", "NEGATIVE", "PASSIVE", "POSITIVE", "Decision", "FeedbackStore", "InvalidDecision",
           "StoreError", "StoredDecision", "export_feedback", "read_labels"]
