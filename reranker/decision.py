"""The decision rule that turns a topic's reranked candidates into what is returned: every candidate whose
calibrated probability reaches a threshold or lies within a relative `margin` of the topic's best
(p >= best x (1 - margin)), at most `max_items`, at least `min_items` (a curator always gets the best guess).
The margin lets a topic whose candidates all score low still return its close seconds, which F2 (recall
weighs four times precision) rewards. The rule is tuned for mean F2 per topic on out-of-fold probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.01, 1.0, 0.01))
DEFAULT_CAPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 32, 50)
DEFAULT_MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class DecisionRule:
    threshold: float = 0.5
    max_items: int = 10
    min_items: int = 1
    tuned: bool = False
    margin: float = 0.0  # 0: off

    def count(self, probabilities: np.ndarray) -> int:
        """How many of the candidates (sorted by probability, highest first) to return."""
        passing = int(np.sum(probabilities >= self.threshold))
        if self.margin > 0 and len(probabilities):
            passing = max(passing, int(np.sum(probabilities >= probabilities[0] * (1 - self.margin))))
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


@dataclass(frozen=True)
class Padded:
    """Topics' sorted probabilities as one matrix (-inf padded) with cumulative hits, so a rule's figures for
    every topic and threshold are a few array operations."""

    probabilities: np.ndarray  # (topics, most candidates)
    hits: np.ndarray  # (topics, most candidates + 1): gold items among the first n
    sizes: np.ndarray
    gold: np.ndarray
    cache: dict[tuple[float, ...], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def passing(self, thresholds: np.ndarray) -> np.ndarray:
        """(topics, thresholds): how many candidates reach each threshold; computed once per grid, since
        tuning asks for it at every cap and margin."""
        key = tuple(thresholds.tolist())
        if key not in self.cache:
            self.cache[key] = (self.probabilities[:, :, None] >= thresholds[None, None, :]).sum(axis=1)
        return self.cache[key]

    @classmethod
    def of(cls, topics: Sequence[TopicScores]) -> Padded:
        width = max((len(t.probabilities) for t in topics), default=0)
        probabilities = np.full((len(topics), width), -np.inf)
        hits = np.zeros((len(topics), width + 1))
        for i, topic in enumerate(topics):
            probabilities[i, :len(topic.probabilities)] = topic.probabilities
            cumulative = np.cumsum(topic.labels)
            hits[i, 1:len(cumulative) + 1] = cumulative
            hits[i, len(cumulative) + 1:] = cumulative[-1] if len(cumulative) else 0
        return cls(probabilities, hits, np.array([len(t.probabilities) for t in topics]),
                   np.array([t.gold_count for t in topics], dtype=np.float64))


def rule_scores(topics: Sequence[TopicScores] | Padded, thresholds: Sequence[float], max_items: int,
                min_items: int = 1, beta: float = 2.0, margin: float = 0.0) -> dict[str, np.ndarray]:
    """Mean F-beta, precision and recall per topic for each threshold, at a fixed cap and margin: shape
    (thresholds,)."""
    padded = topics if isinstance(topics, Padded) else Padded.of(topics)
    grid = np.asarray(thresholds, dtype=np.float64)
    if not len(padded.sizes):
        return {key: np.zeros(len(grid)) for key in ("f", "precision", "recall")}
    probabilities = padded.probabilities
    passing = padded.passing(grid)
    if margin > 0 and probabilities.shape[1]:
        close = (probabilities >= probabilities[:, :1] * (1 - margin)).sum(axis=1)
        passing = np.maximum(passing, close[:, None])
    count = np.minimum(np.maximum(passing, min_items), np.minimum(max_items, padded.sizes)[:, None])
    hits = np.take_along_axis(padded.hits, count, axis=1)
    gold = padded.gold[:, None]
    f = fbeta(hits, count, np.broadcast_to(gold, hits.shape), beta)
    precision = np.divide(hits, count, out=np.zeros_like(hits), where=count > 0)
    recall = hits / np.maximum(gold, 1)
    return {"f": f.mean(axis=0), "precision": precision.mean(axis=0), "recall": recall.mean(axis=0)}


def tune_rule(topics: Sequence[TopicScores], thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
              caps: Sequence[int] = DEFAULT_CAPS, min_items: int = 1, beta: float = 2.0,
              margins: Sequence[float] = DEFAULT_MARGINS) -> DecisionRule:
    """The (threshold, cap, margin) with the best mean F-beta; ties go to the higher threshold, smaller cap
    and smaller margin (fewer items for a curator to review)."""
    if not topics:
        raise ValueError("tune_rule needs at least one topic")
    padded = Padded.of(topics)
    best: tuple[tuple[float, float, int, float], DecisionRule] | None = None
    for cap in sorted(caps):
        for margin in sorted(margins):
            scores = rule_scores(padded, thresholds, cap, min_items, beta, margin)["f"]
            for threshold, score in zip(thresholds, scores, strict=True):
                key = (round(float(score), 9), float(threshold), -cap, -margin)
                if best is None or key > best[0]:
                    best = (key, DecisionRule(float(threshold), cap, min_items, True, float(margin)))
    assert best is not None
    return best[1]
