from __future__ import annotations

import numpy as np

from edurank.artifacts import ModelRef
from edurank.retriever.catalog import load_catalog
from edurank.retriever.config import CandidateConfig
from edurank.retriever.content_index import Companion, ContentIndex, build_faiss
from edurank.retriever.hybrid import Filters, hybrid_candidates
from edurank.retriever.index_job import build_lexical
from tests.conftest import write_catalog


def test_union_is_deduplicated_and_every_candidate_has_both_scores(tmp_path, bundled_encoder) -> None:
    catalog = load_catalog(write_catalog(tmp_path))
    vectors = bundled_encoder.encode_content(catalog)
    index = ContentIndex(build_faiss(vectors), catalog.content.select("id", "language", "kind", "title"),
                         lexical=build_lexical(catalog))
    query = bundled_encoder.encode(["area of a triangle"])
    frame = hybrid_candidates(index, query, ["area of a triangle"], [Filters(language="en")],
                              CandidateConfig(dense=2, lexical=3))[0]
    rows = frame["row"].to_list()
    assert len(rows) == len(set(rows)) and frame["dense_rank"].to_list()[:2] == [1, 2]
    assert np.allclose(frame["dense_score"].to_numpy(), vectors[rows] @ query[0], atol=1e-5)
    lexical_only = frame.filter(frame["dense_rank"].is_null())
    assert lexical_only["lexical_rank"].null_count() == 0
    assert frame["lexical_score"].null_count() == 0
    languages = catalog.content["language"].gather(frame.filter(frame["lexical_rank"].is_not_null())["row"])
    assert set(languages) == {"en"}  # lexical search stays in the topic's language


def test_without_a_lexical_index_candidates_are_dense_only(tmp_path, bundled_encoder) -> None:
    catalog = load_catalog(write_catalog(tmp_path))
    index = ContentIndex(build_faiss(bundled_encoder.encode_content(catalog)),
                         catalog.content.select("id", "language", "kind", "title"))
    frame = hybrid_candidates(index, bundled_encoder.encode(["cells"]), ["cells"], [Filters()],
                              CandidateConfig(dense=3, lexical=3))[0]
    assert frame["dense_rank"].to_list() == [1, 2, 3] and frame["lexical_score"].is_nan().all()


def test_a_companion_scores_every_candidate_with_its_own_vectors(tmp_path, bundled_encoder) -> None:
    catalog = load_catalog(write_catalog(tmp_path))
    vectors = bundled_encoder.encode_content(catalog)
    companion = Companion(np.flip(vectors, axis=1).copy(), ModelRef("elsewhere", "c" * 64))  # any other space
    index = ContentIndex(build_faiss(vectors), catalog.content.select("id", "language", "kind", "title"),
                         lexical=build_lexical(catalog), companion=companion)
    query = bundled_encoder.encode(["area of a triangle"])
    other = np.flip(query, axis=1).copy()
    frame = hybrid_candidates(index, query, ["area of a triangle"], [Filters(language="en")],
                              CandidateConfig(dense=2, lexical=3), companion_vectors=other)[0]
    assert np.allclose(frame["companion_score"].to_numpy(), companion.vectors[frame["row"].to_numpy()] @ other[0])
    plain = hybrid_candidates(index, query, ["area of a triangle"], [Filters(language="en")], CandidateConfig(2, 3))[0]
    assert "companion_score" not in plain.columns
