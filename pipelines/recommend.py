"""The recommend pipeline shared by the service and `edurank evaluate recommend`: encode the topic, find
candidates, score them with the second stage, apply the decision rule.

With a ranker (LightGBM over features, reranker/lightgbm/), candidates are hybrid (dense + lexical) and the stages are
encode, candidates, neighbours (the topic's nearest catalog topics), rerank (only when the ranker reads the
cross-encoder's logits), features, rank. Without
one, the dense top-N is searched and, with a cross-encoder, reranked (tokenise, encode, search, rerank).
Each stage runs under `timer(stage)`, so the service exports per-stage latencies and the evaluation
reports where the time went.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from edurank.encoders import pin_request_thread
from edurank.errors import ArtifactMismatchError
from edurank.reranker.cross_encoder.model import Parts, Reranker
from edurank.reranker.decision import DecisionRule
from edurank.reranker.lightgbm.config import NEEDS_NEIGHBOURS, TOPIC_PARTS
from edurank.reranker.lightgbm.features import content_context, query_facts
from edurank.reranker.lightgbm.model import Ranker
from edurank.reranker.lightgbm.reasons import reasons
from edurank.reranker.stage import SecondStage
from edurank.retriever.content_index import ContentIndex
from edurank.retriever.hybrid import Filters, dense_search, hybrid_candidates
from edurank.retriever.lexical import lexical_text
from edurank.retriever.model import BiEncoder
from edurank.retriever.readable import content_words, readable_title, shared_words, snippet
from edurank.retriever.texts import content_parts
from edurank.retriever.topic_bank import NEIGHBOURS_SEARCHED
from edurank.timing import Timer, no_timer

REASON = pl.Struct({"group": pl.String, "features": pl.List(pl.String), "contribution": pl.Float64, "text": pl.String})
CONTRIBUTION = pl.Struct({"feature": pl.String, "value": pl.Float64, "contribution": pl.Float64})
STAGE_TWO = ("parts", "neighbours", "rerank", "features", "rank")  # what the second stage adds to retrieval
FEATURE_ROW = "_feature_row"  # a ranked candidate's row in the feature frame, while it is explained
Keep = Callable[[np.ndarray], int]  # a query's probabilities, best first -> how many of its candidates to return


@dataclass(frozen=True)
class Query:
    """What is asked: the topic's parts (title, breadcrumbs, description), optional filters, and what is known
    of the topic (its catalog id, for the ranker's graph features; its language, for lexical search)."""

    parts: Parts
    languages: list[str] | None = None
    kinds: list[str] | None = None
    topic_id: str | None = None
    language: str | None = None
    channels: list[str] | None = None  # only content of these channels
    exclude_channels: list[str] | None = None  # no content of these

    @property
    def filters(self) -> Filters:
        return Filters(self.languages, self.kinds, self.language, self.channels, self.exclude_channels)


class VectorCache:
    """The retriever's vectors of the most recent topic texts (least recently used go first): a topic embedded
    ahead of time (Studio's /embed-topics) is not embedded again by /recommend."""

    def __init__(self, size: int = 4096):
        self.size, self.lock, self.stored = size, threading.Lock(), OrderedDict[str, np.ndarray]()

    def vectors(self, texts: list[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """The texts' vectors: cached ones reused, the others embedded (`embed`) and kept."""
        with self.lock:
            found = {t: self.stored[t] for t in texts if t in self.stored}
            for text in found:
                self.stored.move_to_end(text)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            found.update(zip(missing, embed(missing), strict=True))
            with self.lock:
                for text in missing:
                    self.stored[text] = found[text]
                while len(self.stored) > self.size:
                    self.stored.popitem(last=False)
        return np.stack([found[t] for t in texts]) if texts else np.empty((0, 0), dtype=np.float32)


@dataclass
class Recommender:
    """Holds the loaded models, the index and the catalog content the index rows point at."""

    encoder: BiEncoder
    index: ContentIndex
    content: pl.DataFrame  # row i is the index's row i
    reranker: Reranker | None = None
    batch_size: int = 64
    ranker: Ranker | None = None
    topics: pl.DataFrame | None = None  # the catalog's topics, for queries by topic id
    companion: BiEncoder | None = None  # the encoder of the index's companion vectors (the companion group)
    batched_embed: Callable[[list[str]], np.ndarray] | None = None  # the encoder's texts -> vectors, batched
    batched_pairs: Callable[[list[tuple[Parts, Parts, int]]], np.ndarray] | None = None  # the reranker's, batched
    content_facts: pl.DataFrame | None = None  # the ranker's per-row content metadata (default: from `content`)
    cache: VectorCache | None = None  # the retriever's vectors of recent topic texts

    def __post_init__(self) -> None:
        if self.content_facts is None:
            self.content_facts = content_context(self.content)
        self.topic_row = {t: i for i, t in enumerate(self.topics["id"])} if self.topics is not None else {}

    def with_index(self, index: ContentIndex, first_new: int) -> Recommender:
        """The same models over another snapshot of the catalog (the live catalog's, retriever/live.py), whose
        `items` hold every row's texts; rows before `first_new` are those this one already holds."""
        assert self.content_facts is not None
        kept = self.content_facts.slice(0, first_new)
        added = content_context(index.items.slice(first_new), first_row=first_new)
        return dataclasses.replace(self, index=index, content=index.items,
                                   content_facts=pl.concat([kept, added]) if len(added) else kept)

    @property
    def stage(self) -> SecondStage | None:
        """The second stage that decides: the ranker when one is loaded (it may read the cross-encoder's
        logits as features), else the cross-encoder, else none (retrieval alone)."""
        return self.ranker or self.reranker

    @property
    def rule(self) -> DecisionRule:
        """The deciding second stage's tuned rule."""
        return self.stage.rule if self.stage is not None else DecisionRule()

    def encode(self, queries: Sequence[Query], timer: Timer = no_timer, encoder: BiEncoder | None = None) -> np.ndarray:
        """The queries' L2-normalised vectors by the retriever (or the given encoder); the retriever's come
        from the cache where a topic was embedded ahead."""
        encoder = encoder or self.encoder
        texts = encoder.builder.build([q.parts for q in queries])
        if encoder is self.encoder and self.cache is not None:
            return self.cache.vectors(texts, lambda missing: self.embed_texts(missing, timer))
        if encoder is self.encoder and self.batched_embed is not None:
            return self.embed_texts(texts, timer)
        with timer("tokenise"):
            features = encoder.embedder.features(texts)
        with timer("encode"):
            return encoder.embedder.embed(features)

    def embed_texts(self, texts: list[str], timer: Timer = no_timer) -> np.ndarray:
        """The retriever's vectors of ready texts: in the service's shared batches when it set `batched_embed`
        (tokenising and waiting included in `encode`), else here in one batch."""
        with timer("encode"):
            return (self.batched_embed or self.encoder.embed)(texts)

    def search(self, queries: Sequence[Query], candidates: int,
               timer: Timer = no_timer) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (cosine scores, index rows) of its top candidates, best first."""
        vectors = self.encode(queries, timer)
        with timer("search"):
            pin_request_thread()
            return dense_search(self.index, vectors, candidates, [q.filters for q in queries])

    def rerank_with_cross_encoder(self, queries: Sequence[Query], rows: Sequence[np.ndarray],
                                  timer: Timer = no_timer) -> list[np.ndarray]:
        """Calibrated probabilities per query's candidates, in the candidates' order."""
        assert self.reranker is not None
        topic_parts = [q.parts for q, r in zip(queries, rows, strict=True) for _ in range(len(r))]
        flat = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        ranks = [rank for r in rows for rank in range(1, len(r) + 1)]
        probabilities = self.reranker.calibration(self.pair_logits(topic_parts, flat, ranks, timer), ranks)
        return np.split(probabilities, np.cumsum([len(r) for r in rows])[:-1])

    def pair_logits(self, topic_parts: Sequence[Parts], rows: np.ndarray, ranks: Sequence[int],
                    timer: Timer = no_timer) -> np.ndarray:
        """The cross-encoder's logit for each (topic, index row) pair."""
        contents = content_parts(self.content[rows.tolist()])
        return self.cross_encoder_logits(list(zip(topic_parts, contents, ranks, strict=True)), timer)

    def cross_encoder_logits(self, items: list[tuple[Parts, Parts, int]], timer: Timer = no_timer) -> np.ndarray:
        """Cross-encoder logits of (topic parts, content parts, rank) items: in the service's shared batches
        when it set `batched_pairs`, else here in length-sorted batches."""
        assert self.reranker is not None
        with timer("rerank"):  # pairing and tokenising included; in the service, waiting for the batch too
            if self.batched_pairs is not None:
                return self.batched_pairs(items)
            return self.reranker.scores(items, self.batch_size)

    def query_facts(self, queries: Sequence[Query]) -> pl.DataFrame:
        """The ranker's per-query facts: a catalog topic's own row, else what the text gives."""
        rows = []
        for i, query in enumerate(queries):
            row = self.topic_row.get(query.topic_id) if query.topic_id is not None else None
            known = row is not None
            if known:
                assert self.topics is not None
                topic = self.topics[row:row + 1]  # type: ignore[operator]
            else:
                title, breadcrumbs, description = (list(query.parts) + [None, None])[:3]
                topic = pl.DataFrame({"title": [title], "breadcrumbs": [breadcrumbs], "description": [description],
                                      "language": [query.language]}, schema={c: pl.String for c in (
                                          "title", "breadcrumbs", "description", "language")})
            rows.append(query_facts(topic, known).with_columns(pl.lit(i, pl.Int64).alias("query")))
        return pl.concat(rows)

    def rank_with_ranker(self, queries: Sequence[Query], timer: Timer = no_timer, explain: bool = False,
                         keep: Keep | None = None) -> list[pl.DataFrame]:
        """The ranker's path: hybrid candidates, features, calibrated probabilities (and, with `explain`, each
        item's reasons and feature contributions, see `explained`); per query, its candidates sorted by
        probability, only the first `keep(probabilities)` of them given `keep` (only those are explained:
        SHAP values cost far more than the scores)."""
        ranker = self.ranker
        assert ranker is not None
        vectors = self.encode(queries, timer)
        companion = None
        if "companion" in ranker.groups:  # a usable ranker has the index's companion encoder loaded
            assert self.companion is not None
            companion = self.encode(queries, timer, self.companion)
        with timer("candidates"):
            pin_request_thread()  # FAISS searches on this thread's OpenMP pool, sized per thread
            found = hybrid_candidates(self.index, vectors, [lexical_text(q.parts) for q in queries],
                                      [q.filters for q in queries], ranker.candidates, [q.topic_id for q in queries],
                                      companion)
            candidates = pl.concat([f.with_columns(pl.lit(i, pl.Int64).alias("query")) for i, f in enumerate(found)])
        neighbours = None
        if NEEDS_NEIGHBOURS & set(ranker.groups) and self.index.topics is not None:
            with timer("neighbours"):
                neighbours = self.index.topics.neighbours(vectors, [q.topic_id for q in queries], NEIGHBOURS_SEARCHED)
        if "cross" in ranker.groups:  # the cross-encoder scores every candidate (a usable ranker has one loaded)
            ranks = candidates.select(pl.col("dense_score").rank("ordinal", descending=True).over("query"))
            logits = self.pair_logits([queries[q].parts for q in candidates["query"]], candidates["row"].to_numpy(),
                                      ranks.to_series().to_list(), timer)
            candidates = candidates.with_columns(pl.Series("cross_logit", logits, dtype=pl.Float32))
        parts = None
        if "topic_parts" in ranker.groups:  # each part of the topic embedded alone (cached like whole topics)
            embed = self.batched_embed or self.encoder.embed
            with timer("parts"):
                parts = self.encoder.encode_parts(
                    [(list(q.parts) + [None] * len(TOPIC_PARTS))[:len(TOPIC_PARTS)] for q in queries],
                    (lambda texts: self.cache.vectors(texts, embed)) if self.cache is not None else
                    self.batched_embed)  # none: encode's length-sorted batches
        with timer("features"):
            features = ranker.featurise(candidates, self.query_facts(queries), self.content_facts, neighbours,
                                        lambda _, rows: self.index.vectors_of(rows), parts)
        with timer("rank"):
            probabilities = ranker.probabilities(features)
        frame = features.select(
            "query", pl.col("row"), pl.col("dense_rank").alias("retrieval_rank"),
            pl.col("dense_score").alias("retrieval_score"), pl.col("lexical_score")).with_columns(
            pl.Series("probability", probabilities, dtype=pl.Float64)).with_row_index(FEATURE_ROW)
        by_query = frame.partition_by("query", as_dict=True, maintain_order=True)
        ranked = [by_query.get((i,), frame.clear()).sort("probability", descending=True, maintain_order=True)
                  for i in range(len(queries))]
        if keep is not None:
            ranked = [own.head(keep(own["probability"].to_numpy())) for own in ranked]
        chosen = pl.concat(ranked)
        if explain and len(chosen):
            with timer("explain"):
                chosen = chosen.with_columns(self.explained(features[chosen[FEATURE_ROW].to_list()], queries))
        items = shown(self.index.items[chosen["row"].to_list()])
        frame = pl.concat([items, chosen.drop("query", FEATURE_ROW)], how="horizontal")
        return split_rows(frame, [len(own) for own in ranked])

    def explained(self, features: pl.DataFrame, queries: Sequence[Query]) -> list[pl.Series]:
        """Per feature row, `reasons`: why the ranker scored it so, in plain words (reranker/lightgbm/reasons.py,
        the words the topic and the item share included), and `contributions`: every feature's SHAP
        contribution with its value (null: missing), largest first."""
        assert self.ranker is not None
        names = self.ranker.features
        shap = self.ranker.contributions(features)[:, :len(names)]
        values = self.ranker.matrix(features)
        topics = [content_words(lexical_text(q.parts)) for q in queries]  # once per query, not per item
        items = [lexical_text(parts) for parts in content_parts(self.content[features["row"].to_list()])]
        said, raw = [], []
        for i, row in enumerate(features.iter_rows(named=True)):
            found = reasons(row, dict(zip(names, shap[i].tolist(), strict=True)),
                            shared_words(topics[row["query"]], items[i]))
            said.append([{**dataclasses.asdict(r), "features": list(r.features)} for r in found])
            raw.append([{"feature": names[j], "value": None if np.isnan(values[i, j]) else float(values[i, j]),
                         "contribution": round(float(shap[i, j]), 4)}
                        for j in np.argsort(-np.abs(shap[i]), kind="stable")])
        return [pl.Series("reasons", said, dtype=pl.List(REASON)),
                pl.Series("contributions", raw, dtype=pl.List(CONTRIBUTION))]

    def scored_candidates(self, queries: Sequence[Query], candidates: int = 32, rerank: bool = True,
                          timer: Timer = no_timer, explain: bool = False,
                          keep: Keep | None = None) -> list[pl.DataFrame]:
        """Per query, all its candidates: id, title (as stored), kind, language, index row, retrieval rank and
        score, and the second stage's probability (null without one); sorted by probability when reranked.
        With a ranker, the candidates are its hybrid ones and `candidates` is not used, and `keep` may cut
        them before they are explained (see `rank_with_ranker`)."""
        if rerank and self.ranker is not None:
            return self.rank_with_ranker(queries, timer, explain, keep)
        found = self.search(queries, candidates, timer)
        reranking = rerank and self.reranker is not None
        probabilities = (self.rerank_with_cross_encoder(queries, [rows for _, rows in found], timer) if reranking
                         else None)
        frames = []
        for i, (scores, rows) in enumerate(found):
            frame = shown(self.index.items[rows.tolist()]).with_columns(
                pl.Series("row", rows, dtype=pl.Int64),
                pl.Series("retrieval_rank", np.arange(1, len(rows) + 1), dtype=pl.Int32),
                pl.Series("retrieval_score", scores, dtype=pl.Float32),
                pl.Series("probability", probabilities[i] if probabilities is not None else [None] * len(rows),
                          dtype=pl.Float64))
            frames.append(frame.sort("probability", descending=True, maintain_order=True) if reranking else frame)
        return frames

    def recommend(self, queries: Sequence[Query], candidates: int = 32, rerank: bool = True,
                  rule: DecisionRule | None = None, top_k: int = 10,
                  timer: Timer = no_timer, explain: bool = False) -> list[pl.DataFrame]:
        """What is returned: reranked candidates cut by the decision rule (and capped at `top_k`), or
        without reranking the `top_k` nearest items; each with a readable title and a snippet (`for_curators`)."""
        rule = rule or self.rule
        results = []
        for frame in self.scored_candidates(queries, candidates, rerank, timer, explain,
                                            keep=lambda probabilities: min(rule.count(probabilities), top_k)):
            reranked = frame["probability"].null_count() == 0 and len(frame) > 0
            count = rule.count(frame["probability"].to_numpy()) if reranked else len(frame)
            results.append(self.for_curators(frame.head(min(count, top_k))))
        return results

    def for_curators(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The items as a curator reads them: the title in plain text (the description's or text's first words
        where the stored one is no text, e.g. a LaTeX fragment) and a snippet (retriever/readable.py)."""
        texts = list(self.content[frame["row"].to_list()].select("title", "description", "text").iter_rows())
        titles = [readable_title(*t) for t in texts]
        return frame.with_columns(pl.Series("title", titles, dtype=pl.String), pl.Series(
            "snippet", [snippet(shown, *t[1:]) for shown, t in zip(titles, texts, strict=True)], dtype=pl.String))


def split_rows(frame: pl.DataFrame, lengths: Sequence[int]) -> list[pl.DataFrame]:
    """`frame` cut into consecutive parts of these lengths."""
    starts = np.cumsum([0, *lengths[:-1]]) if lengths else []
    return [frame.slice(int(start), length) for start, length in zip(starts, lengths, strict=True)]


def shown(items: pl.DataFrame) -> pl.DataFrame:
    """What a recommended item shows: id, title, kind, language, and, where the index holds them (the live
    catalog's), its channel and description."""
    return items.select("id", "title", "kind", "language",
                        *[pl.col(c) for c in ("channel_id", "description") if c in items.columns])


def ranker_companion(ranker: Ranker) -> BiEncoder | None:
    """The companion encoder the ranker was trained with, checked by fingerprint (for jobs that build the index in
    memory); None when it reads none. Here, not on the ranker: loading a ranker must not import torch."""
    if ranker.companion is None:
        return None
    path = ranker.companion_model()
    if path is None:
        raise ArtifactMismatchError("the ranker reads a companion encoder its manifest does not name; retrain it")
    encoder = BiEncoder.load(path)
    if encoder.fingerprint != ranker.companion:
        raise ArtifactMismatchError(f"the companion encoder at {path} is not the one the ranker was trained with "
                                    f"(fingerprint {encoder.fingerprint[:12]}, expected {ranker.companion[:12]})")
    return encoder
