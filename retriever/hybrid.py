"""Hybrid stage 1: each query's dense top-N (FAISS) and lexical top-N (character n-gram TF-IDF, in the topic's
language) merged and de-duplicated, every candidate scored by both, so stage 2 sees one table per query.

A candidate only one source found still gets the other's similarity (the dense cosine from the index's
stored vector, the TF-IDF cosine from the sparse matrix); its rank in the source that missed it is null.
Where the index holds the catalog's topic vectors, each candidate also gets its reverse scores (how this
topic ranks among all topics for the item, retriever/topic_bank.py); where it holds a companion encoder's
vectors and the query was encoded by that encoder too, its companion cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from edurank.retriever.config import CandidateConfig
from edurank.retriever.content_index import ContentIndex

CANDIDATE_SCHEMA = {"row": pl.Int64, "dense_score": pl.Float32, "dense_rank": pl.Int32,
                    "lexical_score": pl.Float32, "lexical_rank": pl.Int32}


@dataclass(frozen=True)
class Filters:
    """One query's restrictions: languages, kinds and channels (only these, or all but these) for every
    source; `language` (the topic's own) narrows the lexical search only, since character n-grams do not
    match across languages."""

    languages: list[str] | None = None
    kinds: list[str] | None = None
    language: str | None = None
    channels: list[str] | None = None
    exclude_channels: list[str] | None = None

    @property
    def restricts(self) -> bool:
        return bool(self.languages or self.kinds or self.channels or self.exclude_channels)


def dense_search(index: ContentIndex, vectors: np.ndarray, k: int, filters: Sequence[Filters]) \
        -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, (cosines, rows) of its dense top-k, best first."""
    if not any(f.restricts for f in filters):  # one search for the whole batch
        scores, rows = index.search(vectors, k)
        return [(s[r >= 0], r[r >= 0]) for s, r in zip(scores, rows, strict=True)]
    found = []
    for i, f in enumerate(filters):
        scores, rows = index.search(vectors[i:i + 1], k, f.languages, f.kinds, f.channels, f.exclude_channels)
        found.append((scores[0][rows[0] >= 0], rows[0][rows[0] >= 0]))
    return found


def lexical_allowed(index: ContentIndex, f: Filters) -> np.ndarray | None:
    """The rows the lexical search may return: the requested languages, else the topic's own."""
    return index.allowed_rows(f.languages or ([f.language] if f.language else None), f.kinds, f.channels,
                              f.exclude_channels)


def hybrid_candidates(index: ContentIndex, vectors: np.ndarray, lexical_texts: Sequence[str] | None,
                      filters: Sequence[Filters], config: CandidateConfig,
                      topic_ids: Sequence[str | None] | None = None,
                      companion_vectors: np.ndarray | None = None) -> list[pl.DataFrame]:
    """Per query, its candidates (CANDIDATE_SCHEMA, plus reverse_gap and reverse_rank when the index has topic
    vectors, and companion_score given the queries' `companion_vectors`), dense ones first in dense order,
    then lexical-only ones in lexical order. `topic_ids[i]`: query i's catalog topic, if it is one (left out
    of its own reverse comparison)."""
    if companion_vectors is not None and index.companion is None:
        raise ValueError("companion vectors given for an index without a companion")
    dense = dense_search(index, vectors, config.dense, filters)
    use_lexical = index.lexical is not None and config.lexical > 0 and lexical_texts is not None
    queries: sp.csr_matrix | None = None
    lexical: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.float32), np.empty(0, np.int64))] * len(dense)
    if use_lexical:
        assert index.lexical is not None and lexical_texts is not None
        queries = index.lexical.transform(lexical_texts)
        lexical = index.lexical.search(queries, config.lexical, [lexical_allowed(index, f) for f in filters])
    frames = []
    for i, ((d_scores, d_rows), (_, l_rows)) in enumerate(zip(dense, lexical, strict=True)):
        extra = l_rows[~np.isin(l_rows, d_rows)]
        rows = np.concatenate([d_rows, extra]).astype(np.int64)
        dense_score = np.concatenate([d_scores, index.vectors_of(extra) @ vectors[i]]).astype(np.float32)
        dense_rank = [*range(1, len(d_rows) + 1), *[None] * len(extra)]
        lexical_rank_of = {int(r): rank for rank, r in enumerate(l_rows, start=1)}
        if use_lexical:
            assert index.lexical is not None and queries is not None
            lexical_score = index.lexical.similarities(queries[i], [rows])[0]
        else:
            lexical_score = np.full(len(rows), np.nan, dtype=np.float32)
        frame = pl.DataFrame({
            "row": rows, "dense_score": dense_score, "dense_rank": dense_rank,
            "lexical_score": lexical_score, "lexical_rank": [lexical_rank_of.get(int(r)) for r in rows],
        }, schema=CANDIDATE_SCHEMA)
        if companion_vectors is not None:
            assert index.companion is not None
            frame = frame.with_columns(pl.Series("companion_score", index.companion.scores(rows, companion_vectors[i])))
        if index.topics is not None:
            own = topic_ids[i] if topic_ids is not None else None
            frame = index.topics.reverse(frame, index.vectors_of(rows), [own] * len(rows))
        frames.append(frame)
    return frames
