from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.errors import ArtifactMismatchError
from edurank.retriever.content_index import ContentIndex, build_faiss, load_topic_bank
from edurank.retriever.topic_bank import TopicBank


def test_reverse_scores_by_hand_leave_the_topics_own_vector_out() -> None:
    topics = TopicBank(np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32), ["a", "b", "c"])
    items = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    # the query is topic "a" itself: item 0 matches it (cos 1), item 1 matches b (1) and c (0.8) better
    candidates = pl.DataFrame({"dense_score": [1.0, 0.0]})
    frame = topics.reverse(candidates, items, ["a", "a"])
    assert np.allclose(frame["reverse_gap"].to_numpy(), [1.0 - 0.6, 0.0 - 1.0])
    assert frame["reverse_rank"].to_list() == [1, 3]
    free_text = topics.reverse(candidates, items, [None, None])  # "a" now counts as another topic
    assert np.allclose(free_text["reverse_gap"].to_numpy(), [0.0, -1.0])


def test_the_index_saves_its_topic_bank_and_refuses_a_mismatched_one(tmp_path: Path) -> None:
    vectors = np.eye(4, dtype=np.float32)
    items = pl.DataFrame({"id": list("wxyz"), "language": ["en"] * 4, "kind": ["video"] * 4, "title": list("wxyz")})
    ContentIndex(build_faiss(vectors), items, topics=TopicBank(vectors[:2], ["t1", "t2"])).save(tmp_path)
    bank = load_topic_bank(tmp_path, 4)
    assert bank is not None and bank.ids == ["t1", "t2"] and np.array_equal(bank.vectors, vectors[:2])
    with pytest.raises(ArtifactMismatchError, match="rebuild"):
        load_topic_bank(tmp_path, 8)


def test_neighbours_by_hand_are_the_nearest_other_topics_best_first() -> None:
    topics = TopicBank(np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32), ["a", "b", "c"])
    queries = np.array([[1.0, 0.0], [0.8, 0.6]], dtype=np.float32)
    near = topics.neighbours(queries, ["a", None], k=2)  # query 0 is topic "a" itself; query 1 is free text
    assert near["query"].to_list() == [0, 0, 1, 1]
    assert near["neighbour"].to_list() == ["c", "b", "c", "a"]
    assert np.allclose(near["neighbour_score"].to_numpy(), [0.6, 0.0, 0.96, 0.8])
    assert topics.neighbours(queries[:0], [], k=2).is_empty()


def test_a_querys_neighbours_do_not_depend_on_its_batch() -> None:
    topics = TopicBank(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32), ["a", "b"])
    free_text = np.array([[0.6, 0.8]], dtype=np.float32)
    alone = topics.neighbours(free_text, [None], k=2)
    batched = topics.neighbours(np.vstack([topics.vectors[:1], free_text]), ["a", None], k=2)
    assert batched.filter(batched["query"] == 1)["neighbour"].to_list() == alone["neighbour"].to_list() == ["b", "a"]
    assert batched.filter(batched["query"] == 0)["neighbour"].to_list() == ["b"]  # never itself
    assert TopicBank(topics.vectors[:1], ["a"]).neighbours(topics.vectors[:1], ["a"], k=5).is_empty()
