"""The recommend pipeline shared by the service and `edurank evaluate recommend`: encode the topic, search
the FAISS index for N candidates, rerank them with the cross-encoder, apply the decision rule.

Each stage runs under `timer(stage)` (tokenise, encode, search, rerank), so the service can export
per-stage latencies and the evaluation can report where the time went.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from edurank.timing import Timer, no_timer
from reranker.decision import DecisionRule
from reranker.model import Parts, Reranker
from retriever.index import ContentIndex
from retriever.model import BiEncoder
from retriever.texts import content_parts


@dataclass(frozen=True)
class Query:
    """What is asked: the topic's parts (title, breadcrumbs, description) and optional filters."""

    parts: Parts
    languages: list[str] | None = None
    kinds: list[str] | None = None


@dataclass
class Recommender:
    """Holds the loaded models, the index and the catalog content the index rows point at."""

    encoder: BiEncoder
    index: ContentIndex
    content: pl.DataFrame  # row i is the index's row i
    reranker: Reranker | None = None
    batch_size: int = 64

    def encode(self, queries: Sequence[Query], timer: Timer = no_timer) -> np.ndarray:
        texts = self.encoder.builder.build([q.parts for q in queries])
        model = self.encoder.model
        with timer("tokenise"):
            features = model.preprocess(texts)
        with timer("encode"), torch.inference_mode():
            vectors = model(dict(features))["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return np.ascontiguousarray(vectors.numpy(), dtype=np.float32)

    def search(self, queries: Sequence[Query], candidates: int,
               timer: Timer = no_timer) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (cosine scores, index rows) of its top candidates, best first."""
        vectors = self.encode(queries, timer)
        found = []
        with timer("search"):
            if not any(q.languages or q.kinds for q in queries):  # one FAISS call for the whole batch
                scores, rows = self.index.search(vectors, candidates)
                return [(s[r >= 0], r[r >= 0]) for s, r in zip(scores, rows, strict=True)]
            for i, query in enumerate(queries):
                scores, rows = self.index.search(vectors[i:i + 1], candidates, query.languages, query.kinds)
                found.append((scores[0][rows[0] >= 0], rows[0][rows[0] >= 0]))
        return found

    def rerank(self, queries: Sequence[Query], rows: Sequence[np.ndarray], timer: Timer = no_timer) -> list[np.ndarray]:
        """Calibrated probabilities per query's candidates, in the candidates' order."""
        assert self.reranker is not None
        topic_parts = [q.parts for q, r in zip(queries, rows, strict=True) for _ in range(len(r))]
        flat = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        ranks = [rank for r in rows for rank in range(1, len(r) + 1)]
        pairs = self.reranker.pairs(topic_parts, content_parts(self.content[flat.tolist()]), ranks)
        order = np.argsort([len(a) + len(b) for a, b in pairs], kind="stable")
        logits = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            with timer("tokenise"):
                features = self.reranker.tokenize([pairs[i] for i in batch])
            with timer("rerank"):
                logits[batch] = self.reranker.logits_of(features)
        probabilities = self.reranker.calibration(logits, ranks)
        return np.split(probabilities, np.cumsum([len(r) for r in rows])[:-1])

    def score(self, queries: Sequence[Query], candidates: int = 32, rerank: bool = True,
              timer: Timer = no_timer) -> list[pl.DataFrame]:
        """Per query, all its candidates: id, title, kind, language, retrieval rank and score, and the
        reranker's probability (null without reranking); sorted by probability when reranked."""
        found = self.search(queries, candidates, timer)
        reranking = rerank and self.reranker is not None
        probabilities = self.rerank(queries, [rows for _, rows in found], timer) if reranking else None
        frames = []
        for i, (scores, rows) in enumerate(found):
            frame = self.index.items[rows.tolist()].select("id", "title", "kind", "language").with_columns(
                pl.Series("retrieval_rank", np.arange(1, len(rows) + 1), dtype=pl.Int32),
                pl.Series("retrieval_score", scores, dtype=pl.Float32),
                pl.Series("probability", probabilities[i] if probabilities is not None else [None] * len(rows),
                          dtype=pl.Float64))
            frames.append(frame.sort("probability", descending=True, maintain_order=True) if reranking else frame)
        return frames

    def recommend(self, queries: Sequence[Query], candidates: int = 32, rerank: bool = True,
                  rule: DecisionRule | None = None, top_k: int = 10,
                  timer: Timer = no_timer) -> list[pl.DataFrame]:
        """What is returned: reranked candidates cut by the decision rule (and capped at `top_k`), or
        without reranking the `top_k` nearest items."""
        rule = rule or (self.reranker.rule if self.reranker is not None else DecisionRule())
        results = []
        for frame in self.score(queries, candidates, rerank, timer):
            reranked = frame["probability"].null_count() == 0 and len(frame) > 0
            count = rule.count(frame["probability"].to_numpy()) if reranked else len(frame)
            results.append(frame.head(min(count, top_k)))
        return results
