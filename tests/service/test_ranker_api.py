"""/recommend with the LightGBM ranker the service trains at first start on the sample catalog (the README's
first command), through the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from edurank.pipelines.recommend import Query
from edurank.reranker.decision import DecisionRule
from edurank.reranker.lightgbm.reasons import AGAINST
from edurank.retriever.readable import content_words, readable
from edurank.retriever.texts import topic_parts
from edurank.service.app import create_app
from edurank.service.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(artifacts=tmp_path_factory.mktemp("artifacts"), background_load=False)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_first_start_trains_a_ranker_and_serves_both_stages(client: TestClient) -> None:
    ready = client.get("/ready").json()
    assert ready["registry"]["ranker"] is True and ready["registry"]["versions"]["ranker"]
    body = client.post("/recommend", json={"topic_id": "t_en_004"}).json()
    assert body["reranked"] is True and body["rule"]["tuned"] is True and "margin" in body["rule"]
    probabilities = [item["probability"] for item in body["items"]]
    assert probabilities == sorted(probabilities, reverse=True) and all(0 <= p <= 1 for p in probabilities)
    assert all(item["reasons"] is None and item["contributions"] is None for item in body["items"])
    stages = client.get("/metrics").text
    for stage in ("candidates", "neighbours", "features", "rank"):
        assert f'edurank_stage_seconds_count{{stage="{stage}"}}' in stages


def test_explain_gives_reasons_in_plain_words_and_the_raw_contributions(client: TestClient) -> None:
    body = client.post("/recommend", json={"topic": {"title": "Equivalent fractions", "language": "en"},
                                           "explain": True, "top_k": 3}).json()
    assert body["items"]
    ranker = client.app.state.registry.recommender.ranker  # type: ignore[attr-defined]
    for item in body["items"]:
        assert 1 <= len(item["reasons"]) <= 3 and all(isinstance(r, str) for r in item["reasons"])
        sizes = [abs(c["contribution"]) for c in item["contributions"]]  # every feature's, largest first
        assert sorted(c["feature"] for c in item["contributions"]) == sorted(ranker.features)
        assert sizes == sorted(sizes, reverse=True) and item["lexical_score"] is not None
        assert readable(item["title"]) and item["snippet"] != item["title"]


def test_every_reason_moved_the_score_the_way_it_says(client: TestClient) -> None:
    """On the ranker trained at first start, for every candidate of several topics (catalog topics and a free-text
    one), each reason's features moved the score the stated way: their summed SHAP contribution is positive for
    a reason that supports the item, negative for one marked 'against'; and the titles read as text."""
    registry = client.app.state.registry  # type: ignore[attr-defined]
    topics = registry.catalog.topics.filter(pl.col("has_content")).gather_every(6)
    queries = [Query(topic_parts(topics[i:i + 1])[0], topic_id=topics["id"][i], language=topics["language"][i])
               for i in range(len(topics))] + [Query(("Simplifying fractions",), language="en")]
    frames = registry.recommender.scored_candidates(queries, explain=True)
    checked = set()
    for frame in frames:
        assert len(frame)
        for item in frame.iter_rows(named=True):
            assert len(item["reasons"]) <= 3
            contributions = {c["feature"]: c["contribution"] for c in item["contributions"]}
            for reason in item["reasons"]:
                moved = sum(contributions[f] for f in reason["features"])
                assert np.sign(moved) == np.sign(reason["contribution"]) != 0
                assert reason["text"].startswith(AGAINST) == (moved < 0)
                checked.add((reason["group"], moved > 0))
    assert len(checked) >= 6 and {True, False} == {supports for _, supports in checked}
    shown = registry.recommender.recommend(queries, rule=DecisionRule(threshold=0.0, max_items=10))
    assert all(readable(title) for frame in shown for title in frame["title"])


def test_explaining_reads_each_topics_words_once(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The words a topic shares with its items are worked out once per topic, not once per candidate."""
    import edurank.pipelines.recommend as pipeline

    read: list[str | None] = []

    def counted(text: str | None) -> dict[str, str]:
        read.append(text)
        return content_words(text)

    monkeypatch.setattr(pipeline, "content_words", counted)
    queries = [Query(("Equivalent fractions",), language="en"), Query(("Adding fractions",), language="en")]
    frames = client.app.state.registry.recommender.scored_candidates(queries, explain=True)  # type: ignore[attr-defined]
    assert sum(len(frame) for frame in frames) > len(queries) and len(read) == len(queries)


def test_only_the_returned_items_are_explained(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """SHAP values cost far more than scores: `explain` computes them for the items the answer holds, not for
    every candidate, and the items are those the same request without `explain` returns."""
    from edurank.reranker.lightgbm.model import Ranker

    explained: list[int] = []
    contributions = Ranker.contributions

    def counted(self: Ranker, frame: pl.DataFrame) -> np.ndarray:
        explained.append(len(frame))
        return contributions(self, frame)

    monkeypatch.setattr(Ranker, "contributions", counted)
    request = {"topic_id": "t_en_004", "top_k": 3, "threshold": 0.0}
    plain = client.post("/recommend", json=request).json()["items"]
    body = client.post("/recommend", json={**request, "explain": True}).json()
    assert explained == [3] and [i["id"] for i in body["items"]] == [i["id"] for i in plain]
    assert all(item["reasons"] and item["contributions"] for item in body["items"])


def test_the_rule_can_be_overridden_per_request(client: TestClient) -> None:
    request = {"topic_id": "t_en_004", "top_k": 50}
    strict = client.post("/recommend", json={**request, "threshold": 1.0, "margin": 0.0}).json()
    loose = client.post("/recommend", json={**request, "threshold": 1.0, "margin": 0.99}).json()
    assert len(strict["items"]) == 1 and len(loose["items"]) > 1
    assert loose["rule"]["margin"] == 0.99
    bad = client.post("/recommend", json={**request, "margin": 1.5})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "margin"


def test_retrieval_only_on_request(client: TestClient) -> None:
    body = client.post("/recommend", json={"topic_id": "t_en_004", "rerank": False, "top_k": 4}).json()
    assert body["reranked"] is False and [i["retrieval_rank"] for i in body["items"]] == [1, 2, 3, 4]


def test_filters_that_leave_no_candidates_answer_an_empty_list(client: TestClient) -> None:
    # the sample catalog has German items and audio items, but no German audio
    for request in ({"topic_id": "t_en_004", "explain": True}, {"topic": {"title": "Brüche", "language": "de"}}):
        response = client.post("/recommend", json={**request, "languages": ["de"], "kinds": ["audio"]})
        assert response.status_code == 200 and response.json()["items"] == []


def test_a_ranker_is_not_served_over_an_index_missing_what_its_features_read() -> None:
    import faiss
    import polars as pl

    from edurank.reranker.lightgbm.model import Ranker
    from edurank.retriever.config import CandidateConfig
    from edurank.retriever.content_index import ContentIndex
    from edurank.service.registry import usable_ranker

    index = ContentIndex(faiss.IndexFlatIP(4), pl.DataFrame({"id": []}))  # no lexical index, no topic vectors
    ranker = Ranker(None, ("dense", "lexical"), CandidateConfig(), {}, None)  # type: ignore[arg-type]
    assert usable_ranker(ranker, index, None) is None  # type: ignore[arg-type]
    neighbours = Ranker(None, ("dense", "neighbours"), CandidateConfig(), {}, None)  # type: ignore[arg-type]
    assert usable_ranker(neighbours, index, None) is None  # type: ignore[arg-type]
    dense_only = Ranker(None, ("dense", "topic_stats"), CandidateConfig(), {}, None)  # type: ignore[arg-type]
    assert usable_ranker(dense_only, index, None) is dense_only  # type: ignore[arg-type]
