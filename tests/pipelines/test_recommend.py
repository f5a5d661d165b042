from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edurank.pipelines.evaluation import evaluate_recommend, write_report
from edurank.pipelines.recommend import Query, Recommender
from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.reranker.decision import DecisionRule
from edurank.reranker.evaluation import recommend_metrics, topic_scores
from edurank.retriever.catalog import load_catalog
from edurank.retriever.content_index import ContentIndex, build_faiss
from edurank.timing import StageTimes


@pytest.fixture(scope="module")
def recommender(tmp_path_factory: pytest.TempPathFactory, bundled_encoder) -> Recommender:
    from tests.conftest import write_catalog

    catalog = load_catalog(write_catalog(tmp_path_factory.mktemp("catalog")))
    index = ContentIndex(build_faiss(bundled_encoder.encode_content(catalog)),
                         catalog.content.select("id", "language", "kind", "title"))
    reranker = Reranker.load(None, PairFormat(16, 32))
    return Recommender(bundled_encoder, index, catalog.content, reranker)


def test_score_sorts_every_candidate_by_probability(recommender: Recommender) -> None:
    timer = StageTimes()
    frame = recommender.scored_candidates([Query(("Area of a triangle",))], candidates=5, timer=timer)[0]
    assert len(frame) == 5 and frame["probability"].null_count() == 0
    assert frame["probability"].to_list() == sorted(frame["probability"].to_list(), reverse=True)
    assert sorted(frame["retrieval_rank"].to_list()) == [1, 2, 3, 4, 5]
    assert set(timer.seconds) == {"tokenise", "encode", "search", "rerank"}


def test_recommend_applies_the_rule_and_top_k(recommender: Recommender) -> None:
    query = [Query(("Fractions",))]
    keep_all = DecisionRule(threshold=0.0, max_items=4)
    assert len(recommender.recommend(query, candidates=6, rule=keep_all)[0]) == 4
    assert len(recommender.recommend(query, candidates=6, rule=keep_all, top_k=2)[0]) == 2
    assert len(recommender.recommend(query, candidates=6, rule=DecisionRule(threshold=1.0, max_items=4))[0]) == 1


def test_filters_and_retrieval_only(recommender: Recommender) -> None:
    frame = recommender.recommend([Query(("célula",), languages=["es"])], candidates=5, rerank=False)[0]
    assert frame["id"].to_list() == ["c6"] and frame["probability"].to_list() == [None]
    videos = recommender.recommend([Query(("triangle",), kinds=["video"])], candidates=5, rerank=False)[0]
    assert set(videos["kind"]) == {"video"}
    unfiltered = recommender.recommend([Query(("triangle",))], rerank=False, top_k=3)[0]
    assert unfiltered["retrieval_rank"].to_list() == [1, 2, 3]


def test_metrics_by_hand() -> None:
    scores = topic_scores([np.array([0.9, 0.6, 0.1]), np.array([0.2])], [["a", "b", "c"], ["x"]],
                          [{"a", "c"}, {"y"}])
    report = recommend_metrics(scores, DecisionRule(0.5, 10), [["a", "b", "c"], ["x"]], [{"a", "c"}, {"y"}])
    # topic 1 returns a, b: P 1/2, R 1/2, F2 1/2; topic 2 returns x (min one): all zero
    assert np.isclose(report["mean_f2"], 0.25) and np.isclose(report["mean_precision"], 0.25)
    assert np.isclose(report["candidate_recall"], 2 / 3) and "map@25" not in report


def test_evaluate_recommend_writes_a_report(recommender: Recommender, tmp_path: Path) -> None:
    from tests.conftest import write_catalog

    catalog = load_catalog(write_catalog(tmp_path / "catalog"))
    report = evaluate_recommend(recommender, catalog, candidates=4)
    assert report["topics"] == 4 and 0.0 <= report["mean_f2"] <= 1.0
    assert len(report["curve"]["threshold"]) == len(report["curve"]["f"])
    json_path, png_path = write_report(report, tmp_path / "report")
    assert json_path.is_file() and png_path.stat().st_size > 0


def test_items_show_a_readable_title_and_a_snippet(tmp_path: Path, bundled_encoder) -> None:
    from tests.conftest import CONTENT, item, write_catalog

    latex = item("c8", "\\[", "\\[\n\\frac{1}{2}=\\frac{\\square}{8}\n\\]\nWhich number makes these fractions "
                 "equivalent?\nOptions: (A) 4 (B) 2", kind="exercise")
    catalog = load_catalog(write_catalog(tmp_path / "catalog", content=[*CONTENT, latex]))
    index = ContentIndex(build_faiss(bundled_encoder.encode_content(catalog)),
                         catalog.content.select("id", "language", "kind", "title"))
    recommender = Recommender(bundled_encoder, index, catalog.content)
    frame = recommender.recommend([Query(("Equivalent fractions",))], rerank=False, top_k=8)[0]
    shown = dict(zip(frame["id"], frame.select("title", "snippet").iter_rows(), strict=True))
    assert shown["c8"] == ("Which number makes these fractions equivalent?",
                           "1/2=□/8 Which number makes these fractions equivalent? Options: (A) 4 (B) 2")
    assert shown["c3"] == ("Multiplying fractions", "Multiply numerators, multiply denominators: 2/3 × 3/4 = 1/2.")
