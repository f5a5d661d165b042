from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.artifacts import Manifest, ModelRef, write_manifest
from edurank.errors import ArtifactMismatchError, InputError
from edurank.retriever.content_index import ContentIndex, build_faiss


def unit_vectors(count: int, dimension: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def items(count: int) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"c{i}" for i in range(count)],
                         "language": ["en" if i % 2 else "fr" for i in range(count)],
                         "kind": ["video" if i % 3 == 0 else "document" for i in range(count)],
                         "title": [f"item {i}" for i in range(count)]})


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_every_index_type_finds_an_item_by_its_own_vector(index_type: str) -> None:
    vectors = unit_vectors(2000)
    index = ContentIndex(build_faiss(vectors, index_type), items(2000))
    scores, rows = index.search(vectors[:50], 5)
    assert (rows[:, 0] == np.arange(50)).mean() >= 0.9
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_exact_index_matches_brute_force() -> None:
    vectors, queries = unit_vectors(300), unit_vectors(7, seed=1)
    _, rows = build_faiss(vectors).search(queries, 10)
    expected = np.argsort(-queries @ vectors.T, axis=1)[:, :10]
    assert np.array_equal(rows, expected)


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_filters_by_language_and_kind(index_type: str) -> None:
    vectors = unit_vectors(500)
    index = ContentIndex(build_faiss(vectors, index_type), items(500))
    _, rows = index.search(vectors[:5], 20, languages=["en"], kinds=["video"])
    found = index.items[rows[rows >= 0].tolist()]
    assert len(found) > 0
    assert set(found["language"]) == {"en"} and set(found["kind"]) == {"video"}


def test_filter_with_fewer_matches_than_k_pads_with_minus_one() -> None:
    vectors = unit_vectors(30)
    index = ContentIndex(build_faiss(vectors), items(30))
    _, rows = index.search(vectors[:1], 30, languages=["fr"], kinds=["video"])
    assert (rows >= 0).sum() == 5  # ids 0, 6, 12, 18, 24


def test_unknown_index_type_is_refused() -> None:
    with pytest.raises(InputError, match="index type 'lsh'"):
        build_faiss(unit_vectors(10), "lsh")


def test_load_refuses_an_index_built_with_another_model(tmp_path: Path) -> None:
    index = ContentIndex(build_faiss(unit_vectors(20)), items(20))
    index.save(tmp_path)
    write_manifest(tmp_path, Manifest(kind="index", version="v1", weights="i" * 64, data={}, params={},
                                      base_model=ModelRef("/models/a", "aaaa" * 16)).to_dict())
    assert ContentIndex.load(tmp_path, "aaaa" * 16).index.ntotal == 20
    with pytest.raises(ArtifactMismatchError, match="built with model /models/a"):
        ContentIndex.load(tmp_path, "bbbb" * 16)
