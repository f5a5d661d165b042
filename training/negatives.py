"""Hard-negative mining: a model's top-N non-gold candidates for each (topic, gold item) pair.

Candidates scoring above `margin` x the gold item's own score are skipped: in curated catalogs these are
mostly correct items nobody linked, and training against them teaches the model to push positives away
(the "positive-aware" filter of NV-Retriever, Moreira et al. 2024).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from edurank.retriever.catalog import Catalog
from edurank.retriever.content_index import ContentIndex, build_faiss
from edurank.retriever.model import BiEncoder

Pair = tuple[str, str]


def mine_hard_negatives(encoder: BiEncoder, catalog: Catalog, topic_ids: Sequence[str], top_n: int = 50,
                        margin: float = 0.95, batch_size: int = 64) -> dict[Pair, list[str]]:
    """(topic, gold content) -> negatives in rank order, drawn from same-language candidates."""
    content_vectors = encoder.encode_content(catalog, progress=True, batch_size=batch_size)
    index = ContentIndex(build_faiss(content_vectors), catalog.content.select("id", "language", "kind"))
    row_of = {cid: row for row, cid in enumerate(index.ids)}
    topics = catalog.topics.filter(pl.col("id").is_in(list(topic_ids)))
    queries = encoder.encode_topics(catalog, topics, progress=True, batch_size=batch_size)
    gold = catalog.gold
    mined: dict[Pair, list[str]] = {}
    languages = topics["language"].to_list()
    ids = topics["id"].to_list()
    for language in sorted(set(languages)):
        members = [i for i, lang in enumerate(languages) if lang == language]
        scores, rows = index.search(queries[members], top_n + 32, languages=[language])
        for member, topic_scores, topic_rows in zip(members, scores, rows, strict=True):
            topic = ids[member]
            positives = gold[topic]
            candidates = [(index.ids[r], s) for r, s in zip(topic_rows, topic_scores, strict=True)
                          if r >= 0 and index.ids[r] not in positives][:top_n]
            for positive in positives:
                ceiling = margin * float(np.dot(queries[member], content_vectors[row_of[positive]]))
                mined[(topic, positive)] = [c for c, s in candidates if s < ceiling]
    return mined


def topic_clusters(encoder: BiEncoder, catalog: Catalog, topic_ids: Sequence[str], cluster_size: int,
                   seed: int = 42) -> dict[str, int]:
    """k-means over the model's topic vectors, about `cluster_size` topics a cluster: batches built from
    whole clusters make the other rows' items hard in-batch negatives at no extra encoding cost."""
    import faiss

    topics = catalog.topics.filter(pl.col("id").is_in(list(topic_ids)))
    vectors = encoder.encode_topics(catalog, topics, progress=True)
    count = max(1, len(vectors) // max(cluster_size, 1))
    if count == 1:
        return dict.fromkeys(topics["id"].to_list(), 0)
    kmeans = faiss.Kmeans(vectors.shape[1], count, niter=20, seed=seed, spherical=True, min_points_per_centroid=1)
    kmeans.train(vectors)
    _, assigned = kmeans.index.search(vectors, 1)
    return dict(zip(topics["id"].to_list(), assigned[:, 0].tolist(), strict=True))
