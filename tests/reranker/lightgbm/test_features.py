from __future__ import annotations

import numpy as np
import polars as pl

from edurank.reranker.lightgbm.config import DEFAULT_GROUPS
from edurank.reranker.lightgbm.features import Context, Graph, build_features, query_facts

TOPICS = pl.DataFrame({"id": ["P", "A", "B", "C"], "parent": [None, "P", "P", "P"],
                       "channel": ["ch", "ch", "ch", "other"], "title": ["p", "a", "b", "c"],
                       "breadcrumbs": [None, "p", "p", "p"], "description": [None] * 4,
                       "language": ["en"] * 4, "category": ["source", "aligned", "aligned", "aligned"],
                       "level": ["0", "1", "1", "1"]})
LINKS = pl.DataFrame({"topic_id": ["A", "B", "B", "C", "P"], "content_id": ["x", "x", "y", "y", "z"]})
CONTENT = pl.DataFrame({"row": [0, 1, 2, 3], "content_id": ["x", "y", "z", "w"],
                        "item_kind": ["video", "exercise", "video", "audio"],
                        "item_language": ["en", "en", "fr", "en"], "item_chars": [10, 20, 30, 40]})


def candidates(query: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"query": [query] * 4, "row": [0, 1, 2, 3],
                         "dense_score": [0.9, 0.6, 0.5, 0.3], "dense_rank": [1, 2, 3, None],
                         "lexical_score": [0.1, 0.4, 0.0, 0.2], "lexical_rank": [None, 1, None, 2]},
                        schema_overrides={"dense_score": pl.Float32, "lexical_score": pl.Float32,
                                          "dense_rank": pl.Int32, "lexical_rank": pl.Int32})


def context() -> Context:
    return Context(CONTENT, Graph.build(LINKS, TOPICS), {"kind": ["exercise", "video"], "category": ["aligned"]})


def test_graph_features_by_hand_never_count_the_topics_own_links() -> None:
    queries = query_facts(TOPICS.filter(pl.col("id") == "A"))
    frame = build_features(candidates(), queries, context(), list(DEFAULT_GROUPS))
    # x is linked by A (the query itself) and B; y by B and C; z by the parent P; w by nobody
    assert frame["item_links"].to_list() == [1, 2, 1, 0]
    assert frame["sibling_links"].to_list() == [1, 2, 0, 0]  # B and C share A's parent P
    assert frame["parent_links"].to_list() == [0, 0, 1, 0]
    assert frame["channel_links"].to_list() == [1, 1, 1, 0]  # C is in another channel
    assert frame["kind"].to_list() == [1, 0, 1, None]  # audio was never seen in training
    assert frame["same_language"].to_list() == [1, 1, 0, 1] and frame["category"].to_list() == [0] * 4


def test_a_free_text_topic_has_no_tree_position() -> None:
    topic = pl.DataFrame({"title": ["a new topic"], "breadcrumbs": [None], "description": [None],
                          "language": ["en"]})
    frame = build_features(candidates(), query_facts(topic, known=False), context(), list(DEFAULT_GROUPS))
    assert frame["item_links"].to_list() == [2, 2, 1, 0]
    assert frame["parent_links"].null_count() == 4 and frame["category"].null_count() == 4


def test_topic_statistics_are_relative_to_the_topics_best() -> None:
    queries = query_facts(TOPICS.filter(pl.col("id") == "A"))
    frame = build_features(candidates(), queries, context(), ["topic_stats"])
    assert np.allclose(frame["dense_gap"].to_numpy(), [0.0, 0.3, 0.4, 0.6], atol=1e-6)
    assert frame["dense_position"].to_list() == [1, 2, 3, 4]
    assert frame["lexical_position"].to_list() == [3, 1, 4, 2] and frame["candidates"].to_list() == [4] * 4
    assert abs(float(frame["dense_z"].mean())) < 1e-5


def test_a_topic_without_parent_or_channel_subtracts_nothing_it_could_not_count() -> None:
    topics = TOPICS.with_columns(pl.when(pl.col("id") == "P").then(None).otherwise(pl.col("channel")).alias("channel"))
    graph = Graph.build(LINKS, topics)
    frame = build_features(candidates(), query_facts(topics.filter(pl.col("id") == "P")),
                           Context(CONTENT, graph, {"kind": [], "category": []}), ["graph"])
    # P links z itself: its own link comes off item_links only; it has no parent and no channel to count in
    assert frame["item_links"].to_list() == [2, 2, 0, 0]
    assert frame["sibling_links"].to_list() == [0, 0, 0, 0] and frame["channel_links"].to_list() == [0, 0, 0, 0]
    assert frame["parent_links"].null_count() == 4


def test_cross_encoder_features_are_relative_to_the_topics_best_logit() -> None:
    queries = query_facts(TOPICS.filter(pl.col("id") == "A"))
    scored = candidates().with_columns(pl.Series("cross_logit", [1.0, 3.0, -2.0, 2.5], dtype=pl.Float32))
    frame = build_features(scored, queries, context(), ["cross"])
    assert frame["cross_gap"].to_list() == [2.0, 0.0, 5.0, 0.5] and frame["cross_position"].to_list() == [3, 1, 4, 2]


def test_neighbour_features_by_hand_read_only_known_topics_never_the_query_itself() -> None:
    queries = query_facts(TOPICS.filter(pl.col("id") == "A"))
    # A's nearest topics: A itself (left out), C, then B, then P; Q has no links, so the graph does not know it
    near = pl.DataFrame({"query": [0] * 5, "neighbour": ["A", "Q", "C", "B", "P"],
                         "neighbour_score": [1.0, 0.95, 0.9, 0.7, 0.5]},
                        schema_overrides={"neighbour_score": pl.Float32})
    ctx = context()
    frame = build_features(candidates(), queries, Context(ctx.content, ctx.graph, ctx.vocabularies, near),
                           ["neighbours"])
    # x is linked by A and B, y by B and C, z by P, w by nobody
    assert np.allclose(frame["neighbour_best"].to_numpy(), [0.7, 0.9, 0.5, np.nan], equal_nan=True)
    assert frame["neighbour_rank"].to_list() == [2, 1, 3, None] and frame["neighbour_votes"].to_list() == [1, 2, 1, 0]
    assert np.allclose(frame["neighbour_gap"].to_numpy(), [0.2, 0.0, 0.4, np.nan], equal_nan=True)
    without = build_features(candidates(), queries, ctx, ["neighbours"])  # an index with no topic vectors
    assert without["neighbour_best"].null_count() == 4


def test_neighbour_item_features_compare_the_candidate_with_what_near_topics_link_never_itself() -> None:
    """An item no near topic links can still read like the ones they do: its best cosine to a linked item
    other than itself, weighted by that topic's closeness, and how far that is above its own cosine."""
    queries = query_facts(TOPICS.filter(pl.col("id") == "A"))
    near = pl.DataFrame({"query": [0] * 4, "neighbour": ["A", "C", "B", "P"], "neighbour_score": [1.0, 0.9, 0.7, 0.5]},
                        schema_overrides={"neighbour_score": pl.Float32})
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)  # rows of x, y, z, w
    ctx = context()
    frame = build_features(candidates(), queries, Context(ctx.content, ctx.graph, ctx.vocabularies, near,
                                                          lambda _, rows: vectors[rows]), ["neighbour_items"])
    # C (0.9) links y, B (0.7) links x and y, P (0.5) links z; A's own links never count
    assert np.allclose(frame["neighbour_item_best"].to_numpy(), [0.6, 0.8, 0.8, 0.0])
    assert np.allclose(frame["neighbour_item_weighted"].to_numpy(), [0.3, 0.4, 0.72, 0.0])
    assert np.allclose(frame["neighbour_item_gap"].to_numpy(), [-0.3, 0.2, 0.3, -0.3], atol=1e-6)
    only_x = Graph.build(LINKS.filter(pl.col("content_id") == "x"), TOPICS)  # B links x alone
    only_itself = build_features(candidates().head(2), queries, Context(ctx.content, only_x, ctx.vocabularies, near,
                                                                        lambda _, rows: vectors[rows]),
                                 ["neighbour_items"])
    assert only_itself["neighbour_item_best"].to_list()[0] is None  # x: nothing but itself to compare with
    assert only_itself["neighbour_item_best"].to_list()[1] == 0.0
    assert build_features(candidates(), queries, Context(ctx.content, ctx.graph, ctx.vocabularies, near),
                          ["neighbour_items"])["neighbour_item_best"].null_count() == 4  # no vectors given


def test_neighbour_items_read_an_edited_items_current_row_never_its_old_one() -> None:
    """The live catalog keeps an edited item's old row before its new one: x (now row 4) must not be compared
    with its own old text, and what it is compared with is read at its current row."""
    queries = query_facts(TOPICS.filter(pl.col("id") == "A"))
    content = pl.concat([CONTENT, CONTENT.head(1).with_columns(pl.lit(4, pl.Int64).alias("row"))])
    near = pl.DataFrame({"query": [0, 0], "neighbour": ["A", "B"], "neighbour_score": [1.0, 0.7]},
                        schema_overrides={"neighbour_score": pl.Float32})
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1], [0.8, 0.6, 0]], dtype=np.float32)
    edited = candidates().with_columns(pl.Series("row", [4, 1, 2, 3]))
    ctx = context()
    frame = build_features(edited, queries, Context(content, ctx.graph, ctx.vocabularies, near,
                                                    lambda _, rows: vectors[rows]), ["neighbour_items"])
    # B links x (row 4 now) and y: x compares with y alone (0.6), y with x's current text (0.6, not 0.0)
    assert np.allclose(frame["neighbour_item_best"].to_numpy()[:2], [0.6, 0.6])


def test_topic_part_features_score_each_part_alone_and_leave_empty_parts_null() -> None:
    queries = query_facts(TOPICS.filter(pl.col("id") == "A"))
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)  # rows of x, y, z, w
    parts = np.array([[[1, 0, 0], [np.nan] * 3, [0, 1, 0]]], dtype=np.float32)  # title, (no breadcrumbs), description
    ctx = context()
    frame = build_features(candidates(), queries, Context(ctx.content, ctx.graph, ctx.vocabularies, None,
                                                          lambda _, rows: vectors[rows], parts), ["topic_parts"])
    assert np.allclose(frame["part_title"].to_numpy(), [1, 0, 0.6, 0])
    assert np.allclose(frame["part_description_gap"].to_numpy(), [1, 0, 0.2, 1])
    assert frame["part_breadcrumbs"].null_count() == 4 and frame["part_breadcrumbs_gap"].null_count() == 4
    assert build_features(candidates(), queries, ctx, ["topic_parts"])["part_title"].null_count() == 4


def test_companion_features_are_relative_to_the_topics_best_companion_cosine() -> None:
    queries = query_facts(TOPICS.filter(pl.col("id") == "A"))
    scored = candidates().with_columns(pl.Series("companion_score", [0.2, 0.8, 0.5, 0.6], dtype=pl.Float32))
    frame = build_features(scored, queries, context(), ["companion"])
    assert np.allclose(frame["companion_gap"].to_numpy(), [0.6, 0.0, 0.3, 0.2])
    assert frame["companion_position"].to_list() == [4, 1, 3, 2] and abs(float(frame["companion_z"].mean())) < 1e-5
