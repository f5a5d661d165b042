"""Batches for in-batch-negative training: one language per batch, and no text in a batch that is a
correct answer for another row's topic (it would be scored as a negative: a false negative)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    topic: str
    positive: str
    language: str
    negative: str | None = None


def conflicts(example: Example, gold: Mapping[str, set[str]], topics: set[str], candidates: set[str],
              batch_gold: set[str]) -> bool:
    """Would adding `example` put a gold item of some row among another row's negatives?"""
    own = {example.positive} if example.negative is None else {example.positive, example.negative}
    return (example.topic in topics or bool(own & batch_gold) or bool(gold[example.topic] & candidates))


def shuffled(examples: list[Example], rng: random.Random, clusters: Mapping[str, int] | None) -> list[Example]:
    """A random order; with topic clusters, examples of one cluster stay together (clusters in random
    order, shuffled inside), so consecutive rows, and hence batches, hold similar topics."""
    order = examples[:]
    rng.shuffle(order)
    if clusters is None:
        return order
    rank = list(set(clusters.values()))
    rng.shuffle(rank)
    position = {cluster: i for i, cluster in enumerate(rank)}
    return sorted(order, key=lambda e: position.get(clusters.get(e.topic, -1), -1))


def language_batches(examples: list[Example], gold: Mapping[str, set[str]], batch_size: int,
                     rng: random.Random, clusters: Mapping[str, int] | None = None) -> list[list[Example]]:
    """Shuffle within each language (keeping `clusters` together), fill batches greedily without
    conflicts, then shuffle batch order."""
    by_language: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_language[example.language].append(example)
    batches: list[list[Example]] = []
    for language in sorted(by_language):
        pending = shuffled(by_language[language], rng, clusters)
        while pending:
            batch: list[Example] = []
            topics: set[str] = set()
            candidates: set[str] = set()
            batch_gold: set[str] = set()
            deferred: list[Example] = []
            for example in pending:
                if len(batch) == batch_size or conflicts(example, gold, topics, candidates, batch_gold):
                    deferred.append(example)
                    continue
                batch.append(example)
                topics.add(example.topic)
                candidates.add(example.positive)
                if example.negative is not None:
                    candidates.add(example.negative)
                batch_gold |= gold[example.topic]
            batches.append(batch)
            pending = deferred
    rng.shuffle(batches)
    return [b for b in batches if len(b) > 1]
