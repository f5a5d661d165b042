"""The catalog's topics as vectors, stored in the index artifact by the encoder that embedded the content, so
stage 2 can ask the question the other way round: among every catalog topic, how does this one rank for
a candidate item? An item far closer to another topic most likely belongs there, linked or not. It also
gives a topic its nearest other catalog topics, whose links the ranker's neighbours group reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

NEIGHBOURS = 100  # nearest topics the graph knows, per query, whose links the ranker's neighbours features read
# nearest catalog topics searched to find them: some are unknown to the graph (never linked, or held out while
# cross-fitting), so the features keep the first NEIGHBOURS known ones, in training as in serving
NEIGHBOURS_SEARCHED = 2 * NEIGHBOURS
NEIGHBOUR_SCHEMA = {"query": pl.Int64, "neighbour": pl.String, "neighbour_score": pl.Float32}


@dataclass
class TopicBank:
    """Every catalog topic's vector by the encoder that embedded the content (the index stores it)."""

    vectors: np.ndarray
    ids: list[str]

    def reverse(self, candidates: pl.DataFrame, item_vectors: np.ndarray, topic_ids: Sequence[str | None]) \
            -> pl.DataFrame:
        """Add reverse_gap (the candidate's cosine to this topic minus its best cosine to any other catalog
        topic) and reverse_rank (this topic's rank among all topics for the item); `topic_ids[i]` is row i's
        own topic, left out of the others (None: a topic not in the catalog)."""
        scores = item_vectors @ self.vectors.T
        position = {t: i for i, t in enumerate(self.ids)}
        own = candidates["dense_score"].to_numpy().astype(np.float32)
        mine = np.array([position.get(t, -1) if t is not None else -1 for t in topic_ids], dtype=np.int64)
        known = np.flatnonzero(mine >= 0)
        scores[known, mine[known]] = -np.inf
        best = scores.max(axis=1) if scores.shape[1] else np.full(len(own), -np.inf)
        return candidates.with_columns(pl.Series("reverse_gap", own - best, dtype=pl.Float32),
                                       pl.Series("reverse_rank", 1 + (scores > own[:, None]).sum(axis=1),
                                                 dtype=pl.Int32))

    def neighbours(self, vectors: np.ndarray, topic_ids: Sequence[str | None], k: int) -> pl.DataFrame:
        """Each query's `k` nearest catalog topics (NEIGHBOUR_SCHEMA; query i = vectors row i), best first;
        `topic_ids[i]` is query i's own topic, never its own neighbour."""
        k = min(k, len(self.ids))
        if not len(vectors) or k == 0:
            return pl.DataFrame(schema=NEIGHBOUR_SCHEMA)
        scores = vectors @ self.vectors.T
        position = {t: i for i, t in enumerate(self.ids)}
        for i, topic in enumerate(topic_ids):
            if topic in position:
                scores[i, position[topic]] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-best, axis=1, kind="stable")
        top, best = np.take_along_axis(top, order, axis=1), np.take_along_axis(best, order, axis=1)
        ids = np.asarray(self.ids, dtype=object)
        return pl.DataFrame({"query": np.repeat(np.arange(len(vectors)), k), "neighbour": ids[top.ravel()].tolist(),
                             "neighbour_score": best.ravel()}, schema=NEIGHBOUR_SCHEMA) \
            .filter(pl.col("neighbour_score") > -np.inf)  # a query's own topic, where it was among the k
