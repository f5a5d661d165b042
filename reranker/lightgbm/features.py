"""The ranker's features, one function per group, shared by training and serving.

Input is one table of every query's hybrid candidates (retriever/hybrid.py) plus the query's topic facts and
the content's metadata; each group adds its columns. A group the ranker was trained without is never
computed, and the model reads its columns by name (`FEATURE_GROUPS`), so training and serving cannot drift.

- dense: the bi-encoder cosine and its rank among the dense candidates;
- lexical: the character n-gram TF-IDF cosine and its rank among the lexical candidates;
- companion (only with a companion encoder): a second encoder's cosine (the bundled model beside a fine-tuned
  retriever), its gap to the topic's best, z-score and position;
- topic_stats: each similarity against the topic's best (gap, ratio, z-score, position), so a threshold can
  be relative to how sure the topic is;
- reverse: the other way round: among every catalog topic, how this one ranks for the item (an item far
  closer to another topic most likely belongs there, linked or not);
- graph: what the training correlations say: how many training topics link the item, whether the topic's
  parent, siblings or channel link it (the topic's own links never count);
- neighbours: the same correlations seen through the topic's nearest other catalog topics (by the index's
  topic vectors): how close the nearest one linking the item is, its rank, and how many of them link it
  (a kNN vote: a new wrong answer reads like those that share its misconception);
- neighbour_items: how close the item is in meaning to the items the nearest topics link (never itself): an
  item no topic links yet, such as a new construct's own misconception, still reads like those similar topics
  point to;
- topic_parts: the item against each part of the topic embedded alone (title, breadcrumbs, description: a
  question without its answers, the subject a construct sits in, the student's answer and construct), each
  relative to the topic's best; the whole topic's vector blurs a short telling part into a long one;
- metadata: the item's kind, whether its language is the topic's, the topic's category and level, lengths;
- cross (only with a cross-encoder): its logit for the pair, the gap to the topic's best logit, its position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl

from edurank.reranker.lightgbm.config import DEFAULT_GROUPS as DEFAULT_GROUPS  # the group names: light, for the CLI
from edurank.reranker.lightgbm.config import FEATURE_GROUPS, TOPIC_PARTS
from edurank.retriever.topic_bank import NEIGHBOURS

CATEGORICAL = ("kind", "category")
NEIGHBOUR_ITEMS = 10  # the nearest known topics whose linked items neighbour_items compares the candidate with
ItemVectors = Callable[[int, np.ndarray], np.ndarray]  # (query, index rows) -> the rows' vectors, as mined
MONOTONE_INCREASING = ("dense_score",)
# the topic facts a query carries (null where unknown, e.g. a free-text topic has no parent)
QUERY_SCHEMA = {"query": pl.Int64, "topic_id": pl.String, "parent": pl.String, "channel": pl.String,
                "language": pl.String, "category": pl.String, "level": pl.Int64, "topic_chars": pl.Int64}


@dataclass
class Graph:
    """The training correlations as features see them: (topic_id, content_id) links and each linked topic's
    parent and channel."""

    links: pl.DataFrame  # topic_id, content_id, parent, channel

    @classmethod
    def build(cls, links: pl.DataFrame, topics: pl.DataFrame) -> Graph:
        """`links`: (topic_id, content_id) rows; `topics`: at least id, parent, channel."""
        facts = topics.select(pl.col("id").alias("topic_id"), pl.col("parent").cast(pl.String),
                              pl.col("channel").cast(pl.String))
        return cls(links.select("topic_id", "content_id").join(facts, on="topic_id", how="left"))

    def without(self, topics: Sequence[str]) -> Graph:
        """The graph with these topics' links removed (cross-fitting: a topic never sees its fold's links)."""
        return Graph(self.links.filter(~pl.col("topic_id").is_in(list(topics))))

    @cached_property
    def counts(self) -> dict[str, pl.DataFrame]:
        """The link counts graph features join, aggregated once per graph (serving reuses them per request)."""
        links = self.links
        return {
            "own": links.select("topic_id", "content_id", pl.lit(1).alias("own")),
            "item_links": links.group_by("content_id").agg(pl.len().alias("item_links")),
            "sibling_links": links.drop_nulls("parent").group_by("parent", "content_id")
            .agg(pl.len().alias("sibling_links")),
            "channel_links": links.drop_nulls("channel").group_by("channel", "content_id")
            .agg(pl.len().alias("channel_links")),
            "parent_links": links.select(pl.col("topic_id").alias("parent"), "content_id",
                                         pl.lit(1).alias("parent_links")).unique(),
            "linkers": links.select(pl.col("topic_id").alias("neighbour"), "content_id").unique(),
            "known": links.select(pl.col("topic_id").unique()),
        }


@dataclass
class Context:
    """What the feature groups read besides the candidates: content metadata by index row, the graph, the
    category vocabularies fixed at training (codes must mean the same at serving) and each query's nearest
    catalog topics (TopicBank.neighbours; None where the index holds no topic vectors) and the content vectors
    the query's candidates were found with (the index's at serving, the mining retriever's in training)."""

    content: pl.DataFrame  # row, content_id, item_kind, item_language, item_chars
    graph: Graph
    vocabularies: dict[str, list[str]]
    neighbours: pl.DataFrame | None = None  # query, neighbour, neighbour_score; None: not computed
    item_vectors: ItemVectors | None = None  # None: no neighbour_items or topic_parts features
    part_vectors: np.ndarray | None = None  # (query, TOPIC_PARTS, dimension), NaN for an empty part


def dense(frame: pl.DataFrame, _: Context) -> pl.DataFrame:
    return frame  # dense_score and dense_rank come with the candidates


def lexical(frame: pl.DataFrame, _: Context) -> pl.DataFrame:
    return frame  # lexical_score and lexical_rank come with the candidates


def reverse(frame: pl.DataFrame, _: Context) -> pl.DataFrame:
    """reverse_gap and reverse_rank come with the candidates (TopicBank.reverse, where the vectors are);
    null where the index holds no topic vectors."""
    missing = [pl.lit(None, pl.Float32).alias(c) for c in FEATURE_GROUPS["reverse"] if c not in frame.columns]
    return frame.with_columns(missing) if missing else frame


def topic_stats(frame: pl.DataFrame, _: Context) -> pl.DataFrame:
    by_query = pl.col("query")
    dense_max = pl.col("dense_score").max().over(by_query)
    lexical_max = pl.col("lexical_score").max().over(by_query)
    return frame.with_columns(
        dense_max.alias("dense_max"), (dense_max - pl.col("dense_score")).alias("dense_gap"),
        (pl.col("dense_score") / dense_max.clip(lower_bound=1e-6)).alias("dense_ratio"),
        zscore("dense_score"),
        pl.col("dense_score").rank("ordinal", descending=True).over(by_query).alias("dense_position"),
        lexical_max.alias("lexical_max"), (lexical_max - pl.col("lexical_score")).alias("lexical_gap"),
        zscore("lexical_score"),
        pl.col("lexical_score").rank("ordinal", descending=True).over(by_query).alias("lexical_position"),
        pl.len().over(by_query).alias("candidates"))


def companion(frame: pl.DataFrame, _: Context) -> pl.DataFrame:
    """companion_score comes with the candidates (the index's companion vectors); relative to the topic's
    best as topic_stats does for the retriever's cosine."""
    score, by_query = pl.col("companion_score"), pl.col("query")
    return frame.with_columns((score.max().over(by_query) - score).alias("companion_gap"), zscore("companion_score"),
                              score.rank("ordinal", descending=True).over(by_query).alias("companion_position"))


def cross(frame: pl.DataFrame, _: Context) -> pl.DataFrame:
    """cross_logit comes with the candidates (the cross-encoder scores them); its gap to the topic's best and
    its position are added."""
    logit, by_query = pl.col("cross_logit"), pl.col("query")
    return frame.with_columns((logit.max().over(by_query) - logit).alias("cross_gap"),
                              logit.rank("ordinal", descending=True).over(by_query).alias("cross_position"))


def zscore(column: str) -> pl.Expr:
    value, by_query = pl.col(column), pl.col("query")
    return ((value - value.mean().over(by_query)) / (value.std().over(by_query).fill_null(0) + 1e-6)) \
        .alias(column.split("_")[0] + "_z")


def graph(frame: pl.DataFrame, context: Context) -> pl.DataFrame:
    """Link counts from the graph, each minus the query topic's own link so a known topic cannot see its
    answer."""
    counts = context.graph.counts
    out = (frame.join(counts["own"], on=["topic_id", "content_id"], how="left")
           .join(counts["item_links"], on="content_id", how="left")
           .join(counts["sibling_links"], on=["parent", "content_id"], how="left")
           .join(counts["channel_links"], on=["channel", "content_id"], how="left")
           .join(counts["parent_links"], on=["parent", "content_id"], how="left"))
    own_link = pl.col("own").fill_null(0)

    def minus_own(column: str, key: str) -> pl.Expr:  # a null key joined nothing, so there is nothing to take off
        own = pl.when(pl.col(key).is_not_null()).then(own_link).otherwise(0)
        return (pl.col(column).fill_null(0) - own).alias(column)

    return out.with_columns(
        (pl.col("item_links").fill_null(0) - own_link).alias("item_links"),
        minus_own("sibling_links", "parent"), minus_own("channel_links", "channel"),
        pl.when(pl.col("parent").is_null()).then(None).otherwise(pl.col("parent_links").fill_null(0))
        .alias("parent_links")).drop("own")


def neighbours(frame: pl.DataFrame, context: Context) -> pl.DataFrame:
    """Over the query's NEIGHBOURS nearest topics that the graph knows (never the query's own topic): the
    best cosine of one linking the item, its gap to the query's nearest known topic, its rank among them,
    and how many of them link the item; null (votes 0) when none of them does, all null where no
    neighbours were computed (an index without topic vectors)."""
    if context.neighbours is None:
        return frame.with_columns(pl.lit(None, pl.Float32).alias(c) for c in FEATURE_GROUPS["neighbours"])
    counts = context.graph.counts
    near = nearest_known(frame, context.neighbours, context.graph, NEIGHBOURS) \
        .with_columns(pl.col("neighbour_score").max().over("query").alias("nearest"))
    links = counts["linkers"].filter(pl.col("content_id").is_in(frame["content_id"].unique().implode()))
    votes = near.join(links, on="neighbour").group_by("query", "content_id").agg(
        pl.col("neighbour_score").max().alias("neighbour_best"), pl.col("neighbour_rank").min(),
        pl.len().alias("neighbour_votes"), pl.col("nearest").first())
    return (frame.join(votes, on=["query", "content_id"], how="left")
            .with_columns((pl.col("nearest") - pl.col("neighbour_best")).alias("neighbour_gap"),
                          pl.col("neighbour_votes").fill_null(0))
            .drop("nearest"))


def nearest_known(frame: pl.DataFrame, neighbours: pl.DataFrame, graph: Graph, k: int) -> pl.DataFrame:
    """Each query's `k` nearest topics that the graph knows, never its own topic: (query, neighbour,
    neighbour_score, neighbour_rank) rows."""
    own = frame.select("query", "topic_id").unique("query")
    return (neighbours.join(own, on="query", how="left")
            .filter(pl.col("neighbour").is_in(graph.counts["known"]["topic_id"].implode()),
                    pl.col("topic_id").is_null() | (pl.col("neighbour") != pl.col("topic_id")))
            .with_columns(pl.col("neighbour_score").rank("ordinal", descending=True).over("query")
                          .alias("neighbour_rank"))
            .filter(pl.col("neighbour_rank") <= k)
            .drop("topic_id"))


def neighbour_items(frame: pl.DataFrame, context: Context) -> pl.DataFrame:
    """Over the items the query's NEIGHBOUR_ITEMS nearest known topics link (the candidate itself left out):
    the candidate's best cosine to one of them, the same weighted by that topic's closeness to the query, and
    how far the best one is above the candidate's own cosine to the query; null where none applies (no
    neighbours or vectors, or no linked item but itself)."""
    names = FEATURE_GROUPS["neighbour_items"]
    if context.neighbours is None or context.item_vectors is None:
        return frame.with_columns(pl.lit(None, pl.Float32).alias(c) for c in names)
    # an item's current row: the live catalog keeps an edited item's old row before its new one
    rows_of = context.content.unique("content_id", keep="last", maintain_order=True) \
        .select("content_id", pl.col("row").alias("linked_row"))
    linked = (nearest_known(frame, context.neighbours, context.graph, NEIGHBOUR_ITEMS)
              .join(context.graph.counts["linkers"], on="neighbour").join(rows_of, on="content_id")
              .group_by("query", "content_id", "linked_row").agg(pl.col("neighbour_score").max().alias("weight")))
    found = {query: (part["linked_row"].to_numpy(), part["content_id"].to_numpy(), part["weight"].to_numpy())
             for (query,), part in linked.partition_by("query", as_dict=True).items()}
    best = np.full(len(frame), np.nan, dtype=np.float32)
    weighted = best.copy()
    queries, rows, ids = frame["query"].to_numpy(), frame["row"].to_numpy(), frame["content_id"].to_numpy()
    for positions in by_query(queries):
        if int(queries[positions[0]]) not in found:
            continue
        query = int(queries[positions[0]])
        linked_rows, linked_ids, weights = found[query]
        cosine = context.item_vectors(query, rows[positions]) @ context.item_vectors(query, linked_rows).T
        itself = ids[positions][:, None] == linked_ids[None, :]  # its own link is the neighbours group's vote
        for target, values in ((best, cosine), (weighted, cosine * weights[None, :])):
            top = np.where(itself, -np.inf, values).max(axis=1)
            target[positions] = np.where(np.isfinite(top), top, np.nan)
    best_column = pl.Series(names[0], best, nan_to_null=True)
    return frame.with_columns(best_column, pl.Series(names[1], weighted, nan_to_null=True),
                              (best_column - pl.col("dense_score")).alias(names[2]))


def by_query(queries: np.ndarray) -> list[np.ndarray]:
    """The positions of each query's rows, query by query."""
    order = np.argsort(queries, kind="stable")
    return [part for part in np.split(order, np.flatnonzero(np.diff(queries[order])) + 1) if len(part)]


def topic_parts(frame: pl.DataFrame, context: Context) -> pl.DataFrame:
    """The item's cosine with each topic part's own vector and its gap to the topic's best for that part; null
    where the part is empty (or no part vectors were computed)."""
    names = FEATURE_GROUPS["topic_parts"]
    if context.part_vectors is None or context.item_vectors is None:
        return frame.with_columns(pl.lit(None, pl.Float32).alias(c) for c in names)
    scores = np.full((len(frame), len(TOPIC_PARTS)), np.nan, dtype=np.float32)
    queries, rows = frame["query"].to_numpy(), frame["row"].to_numpy()
    for positions in by_query(queries):
        query = int(queries[positions[0]])
        scores[positions] = context.item_vectors(query, rows[positions]) @ context.part_vectors[query].T
    cosines = [pl.Series(name, scores[:, i], nan_to_null=True) for i, name in enumerate(names[:len(TOPIC_PARTS)])]
    return frame.with_columns(*cosines).with_columns(
        (pl.col(c.name).max().over("query") - pl.col(c.name)).alias(c.name + "_gap") for c in cosines)


def metadata(frame: pl.DataFrame, context: Context) -> pl.DataFrame:
    return frame.with_columns(
        encode(pl.col("item_kind"), context.vocabularies["kind"]).alias("kind"),
        encode(pl.col("category"), context.vocabularies["category"]).alias("category"),
        pl.when(pl.col("language").is_null()).then(None)
        .otherwise((pl.col("language") == pl.col("item_language")).cast(pl.Int8)).alias("same_language"))


def encode(column: pl.Expr, vocabulary: list[str]) -> pl.Expr:
    """Category -> its index in the training vocabulary; unseen or null -> null (LightGBM: missing)."""
    return column.replace_strict(vocabulary, list(range(len(vocabulary))), default=None, return_dtype=pl.Int32)


GROUP_FUNCTIONS: dict[str, Callable[[pl.DataFrame, Context], pl.DataFrame]] = {
    "dense": dense, "companion": companion, "lexical": lexical, "topic_stats": topic_stats, "reverse": reverse,
    "graph": graph, "neighbours": neighbours, "neighbour_items": neighbour_items, "topic_parts": topic_parts,
    "metadata": metadata, "cross": cross}


def vocabularies(content: pl.DataFrame, topics: pl.DataFrame) -> dict[str, list[str]]:
    """The category vocabularies of a training catalog (sorted, so they do not depend on row order)."""
    return {"kind": sorted(content["kind"].drop_nulls().unique().to_list()),
            "category": sorted(topics["category"].drop_nulls().cast(pl.String).unique().to_list())}


def content_context(content: pl.DataFrame, first_row: int = 0) -> pl.DataFrame:
    """Content metadata by index row: row i of the catalog's content is index row i (`first_row` + i for rows
    appended to an index that has `first_row` already)."""
    text_chars = pl.sum_horizontal(pl.col(c).fill_null("").str.len_chars() for c in ("title", "description", "text"))
    return content.select((pl.int_range(pl.len(), dtype=pl.Int64) + first_row).alias("row"),
                          pl.col("id").alias("content_id"),
                          pl.col("kind").alias("item_kind"), pl.col("language").alias("item_language"),
                          text_chars.alias("item_chars"))


def build_features(candidates: pl.DataFrame, queries: pl.DataFrame, context: Context,
                   groups: Sequence[str]) -> pl.DataFrame:
    """`candidates` (query, row and the hybrid scores) joined with the query facts and content metadata, plus
    every column of the given groups; rows keep the candidates' order."""
    items = context.content.drop("row")[candidates["row"].to_list()]  # content_context row i is index row i
    items = items.drop([c for c in items.columns if c in candidates.columns])
    frame = pl.concat([candidates.with_row_index("_order"), items], how="horizontal") \
        .join(queries, on="query", how="left")
    for group in groups:
        frame = GROUP_FUNCTIONS[group](frame, context)
    return frame.sort("_order").drop("_order")


def feature_names(groups: Sequence[str]) -> list[str]:
    return [name for group in groups for name in FEATURE_GROUPS[group]]


def query_facts(topics: pl.DataFrame, known: bool = True) -> pl.DataFrame:
    """QUERY_SCHEMA rows for topics (query i = row i). `known`: they are catalog topics, so their id, parent
    and channel mean something to the graph; a free-text topic has only its texts and language."""
    chars = pl.sum_horizontal(pl.col(c).fill_null("").str.len_chars() for c in ("title", "breadcrumbs", "description"))
    optional = {c: pl.col(c).cast(pl.String) if known and c in topics.columns else pl.lit(None, pl.String)
                for c in ("id", "parent", "channel", "category")}
    return topics.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("query"), optional["id"].alias("topic_id"),
        optional["parent"].alias("parent"), optional["channel"].alias("channel"),
        pl.col("language").cast(pl.String) if "language" in topics.columns else pl.lit(None, pl.String),
        optional["category"].alias("category"),
        (pl.col("level").cast(pl.Int64, strict=False) if "level" in topics.columns else pl.lit(None, pl.Int64))
        .alias("level"),
        chars.cast(pl.Int64).alias("topic_chars")).cast(QUERY_SCHEMA)  # type: ignore[arg-type]
