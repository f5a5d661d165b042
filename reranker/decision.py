"""The decision rule that turns a topic's reranked candidates into what is returned: every candidate whose
calibrated probability reaches a threshold, at most `max_items`, at least `min_items` (a curator always gets
the best guess). The rule is tuned for mean F2 per topic on out-of-fold probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.01, 1.0, 0.01))
DEFAULT_CAPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 32, 50)


@dataclass(frozen=True)
class DecisionRule:
    threshold: float = 0.5
    max_items: int = 10
    min_items: int = 1
    tuned: bool = False

    def count(self, probabilities: np.ndarray) -> int:
        """How many of the candidates (sorted by probability, highest first) to return."""
        passing = int(np.sum(probabilities >= self.threshold))
        return int(min(max(passing, self.min_items), self.max_items, len(probabilities)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TopicScores:
    """One topic's candidates, sorted by probability (highest first), with their gold labels and the
    number of gold items the topic has in all (gold items retrieval missed still count against recall)."""

    probabilities: np.ndarray
    labels: np.ndarray
    gold_count: int

    @classmethod
    def sorted(cls, probabilities: Sequence[float], labels: Sequence[bool], gold_count: int) -> TopicScores:
        order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="stable")
        return cls(np.asarray(probabilities, dtype=np.float64)[order], np.asarray(labels, dtype=bool)[order],
                   gold_count)


def fbeta(hits: np.ndarray, returned: np.ndarray, gold: np.ndarray | int, beta: float = 2.0) -> np.ndarray:
    """F-beta from counts (vectorised); 0 where nothing was found."""
    hits = np.asarray(hits, dtype=np.float64)
    precision = np.divide(hits, returned, out=np.zeros_like(hits), where=np.asarray(returned) > 0)
    recall = np.divide(hits, gold, out=np.zeros_like(hits), where=np.asarray(gold) > 0)
    denominator = beta * beta * precision + recall
    return np.divide((1 + beta * beta) * precision * recall, denominator, out=np.zeros_like(hits),
                     where=denominator > 0)


def rule_scores(topics: Sequence[TopicScores], thresholds: Sequence[float], max_items: int,
                min_items: int = 1, beta: float = 2.0) -> dict[str, np.ndarray]:
    """Mean F-beta, precision and recall per topic for each threshold, at a fixed cap: shape (thresholds,)."""
    grid = np.asarray(thresholds, dtype=np.float64)
    f_sum, p_sum, r_sum = np.zeros(len(grid)), np.zeros(len(grid)), np.zeros(len(grid))
    for topic in topics:
        cumulative = np.concatenate([[0], np.cumsum(topic.labels)])
        # probabilities are sorted descending, so "how many pass t" is a search on the negated array
        passing = np.searchsorted(-topic.probabilities, -grid, side="right")
        count = np.minimum(np.maximum(passing, min_items), min(max_items, len(topic.probabilities)))
        hits = cumulative[count]
        f_sum += fbeta(hits, count, topic.gold_count, beta)
        p_sum += np.divide(hits, count, out=np.zeros(len(grid)), where=count > 0)
        r_sum += hits / max(topic.gold_count, 1)
    total = max(len(topics), 1)
    return {"f": f_sum / total, "precision": p_sum / total, "recall": r_sum / total}


def tune_rule(topics: Sequence[TopicScores], thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
              caps: Sequence[int] = DEFAULT_CAPS, min_items: int = 1, beta: float = 2.0) -> DecisionRule:
    """The (threshold, cap) pair with the best mean F-beta; ties go to the higher threshold and smaller cap
    (fewer items for a curator to review)."""
    if not topics:
        raise ValueError("tune_rule needs at least one topic")
    best: tuple[float, float, int] | None = None
    for cap in sorted(caps):
        scores = rule_scores(topics, thresholds, cap, min_items, beta)["f"]
        for threshold, score in zip(thresholds, scores, strict=True):
            key = (round(float(score), 9), float(threshold), -cap)
            if best is None or key > (best[0], best[1], -best[2]):
                best = (key[0], float(threshold), cap)
    assert best is not None
    return DecisionRule(threshold=best[1], max_items=best[2], min_items=min_items, tuned=True)
