"""The catalog's topics as vectors, stored in the index artifact by the encoder that embedded the content, so
stage 2 can ask the question the other way round: among every catalog topic, how does this one rank for
a candidate item? An item far closer to another topic most likely belongs there, linked or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl


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
