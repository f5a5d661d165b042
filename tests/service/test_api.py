"""The HTTP API over a tiny catalog, with the bundled encoder and a reranker whose head is untrained (its
scores are arbitrary; the tests check the contract, not the ranking)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.reranker.decision import DecisionRule
from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import write_catalog


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("service")
    reranker = Reranker.load(None, PairFormat(16, 32))
    reranker.rule = DecisionRule(threshold=0.0, max_items=3, tuned=True)
    reranker.save(root / "reranker")
    return Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"),
                    reranker=str(root / "reranker"), train_ranker=False, background_load=False, max_text_chars=200,
                    max_rerank_candidates=4)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_health_ready_and_docs(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["registry"]["reranker"] is True
    assert ready.json()["registry"]["catalog_items"] == 7
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/rerank", "/health", "/ready", "/metrics"} <= set(paths)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text  # served locally: works air-gapped
    assert client.get("/static/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_recommend_by_topic_id(client: TestClient) -> None:
    body = client.post("/recommend", json={"topic_id": "geo_area"}).json()
    assert body["topic_id"] == "geo_area" and body["reranked"] is True
    assert len(body["items"]) == 3 and body["rule"]["max_items"] == 3
    probabilities = [item["probability"] for item in body["items"]]
    assert probabilities == sorted(probabilities, reverse=True) and all(0 <= p <= 1 for p in probabilities)
    assert set(body["versions"]) == {"retriever", "index", "ranker", "reranker", "essays", "classifier"}
    assert body["versions"]["index"]
    assert body["versions"]["essays"] is None and body["versions"]["classifier"] is None  # none trained here
    assert {"id", "title", "kind", "language", "retrieval_rank", "retrieval_score"} <= set(body["items"][0])


def test_recommend_by_text_with_options(client: TestClient) -> None:
    body = client.post("/recommend", json={"topic": {"title": "La célula", "language": "es"},
                                           "languages": ["es"], "rerank": False, "top_k": 5}).json()
    assert [item["id"] for item in body["items"]] == ["c6"] and body["reranked"] is False
    assert body["items"][0]["probability"] is None and body["rule"] is None
    strict = client.post("/recommend", json={"topic": {"title": "Fractions"}, "threshold": 1.0}).json()
    assert len(strict["items"]) == 1 and strict["rule"]["threshold"] == 1.0  # at least one, however strict
    capped = client.post("/recommend", json={"topic": {"title": "Fractions"}, "top_k": 2}).json()
    assert len(capped["items"]) == 2
    videos = client.post("/recommend", json={"topic": {"title": "triangle"}, "kinds": ["video"]}).json()
    assert {item["kind"] for item in videos["items"]} == {"video"}


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"topic_id": "nope"}, 404, ["body", "topic_id"]),
    ({"topic": {"title": "x"}, "top_k": 51}, 422, ["body", "top_k"]),
    ({"topic": {"title": "x"}, "top_k": 0}, 422, ["body", "top_k"]),
    ({"topic": {"title": "x"}, "candidates": 1000}, 422, ["body", "candidates"]),
    ({"topic": {"title": "   "}}, 422, ["body", "topic", "title"]),
    ({"topic": {"title": ""}}, 422, ["body", "topic", "title"]),
    ({"topic": {"title": "x" * 201}}, 422, ["body", "topic", "title"]),
    ({"topic": {"title": "x", "language": "xx"}}, 422, ["body", "topic", "language"]),
    ({"topic": {"title": "x"}, "languages": ["en", "xx"]}, 422, ["body", "languages", 1]),
    ({"topic": {"title": "x"}, "kinds": ["podcast"]}, 422, ["body", "kinds", 0]),
    ({"topic": {"title": "x"}, "threshold": 1.5}, 422, ["body", "threshold"]),
    ({"topic": {"title": "x"}, "topic_id": "fr"}, 422, ["body"]),
    ({}, 422, ["body"]),
    ({"topic": {"title": 3}}, 422, ["body", "topic", "title"]),
    ({"topic": {"title": "x"}, "colour": "red"}, 422, ["body", "colour"]),
])
def test_bad_recommend_requests_name_the_field(client: TestClient, body: dict, status: int, field: list) -> None:
    response = client.post("/recommend", json=body)
    assert response.status_code == status
    assert response.json()["detail"][0]["loc"] == field and response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(("content", "content_type"), [
    (b"{broken", "application/json"), (b"hello", "text/plain"), (b"", "application/json"),
    (b"\xff\xfe", "application/json"), (b"[1, 2]", "application/json"),
])
def test_broken_bodies_get_4xx_never_500(client: TestClient, content: bytes, content_type: str) -> None:
    response = client.post("/recommend", content=content, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500 and response.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize(("content", "why"), [
    (b'{"topic_id": "\xff\xfe"}', "not valid UTF-8"),
    (b"[" * 5_000 + b"]" * 5_000, "nests too deeply"),
    (b'{"topic_id": "geo_area", "top_k": ' + b"9" * 5_000 + b"}", "number too long"),
])
def test_bodies_json_cannot_read_get_a_400_in_the_one_shape(client: TestClient, content: bytes, why: str) -> None:
    response = client.post("/recommend", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body"] and why in response.json()["detail"][0]["msg"]


def test_http_errors_share_the_shape_and_echo_no_long_ids(client: TestClient) -> None:
    unknown = client.post("/recommend", json={"topic_id": "x" * 100})
    assert unknown.status_code == 404 and unknown.json()["detail"][0]["loc"] == ["body", "topic_id"]
    too_long = client.post("/recommend", json={"topic_id": "x" * 1_000_000})  # ids are bounded: never echoed whole
    assert too_long.status_code == 422 and len(too_long.content) < 1_000
    assert too_long.json()["detail"][0]["loc"] == ["body", "topic_id"]
    assert client.get("/nowhere").json()["detail"][0]["loc"] == ["path"]
    assert client.get("/recommend").json()["detail"][0]["loc"] == ["method"]
    head = client.head("/health")
    assert head.status_code == 200 and head.content == b""


def test_an_unexpected_failure_is_a_counted_500_that_shows_nothing_inside(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom at /srv/secret/index.faiss")

    monkeypatch.setattr("edurank.service.handlers.recommend.recommend", broken)
    response = client.post("/recommend", json={"topic_id": "geo_area"})
    assert response.status_code == 500 and "secret" not in response.text and "boom" not in response.text
    assert response.json()["detail"][0]["type"] == "internal_error"
    assert 'edurank_requests_total{route="/recommend",status="500"}' in client.get("/metrics").text


def test_the_schema_states_one_of_rules_and_the_error_responses(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    edurank, studio = schema["paths"]["/recommend"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["oneOf"]  # edurank's body, or Kolibri Studio's (le-utils' schema, with its refs inlined)
    assert [form["required"] for form in edurank["oneOf"]] == [["topic_id"], ["topic"]]
    assert studio["required"] == ["topics"] and "$ref" not in str(studio)
    responses = schema["paths"]["/recommend"]["post"]["responses"]
    assert {"400", "404", "413", "422", "429", "503"} <= set(responses)
    assert "Retry-After" in responses["429"]["headers"]


def test_rerank_scores_callers_candidates(client: TestClient) -> None:
    body = client.post("/rerank", json={"query": "area of a triangle",
                                        "candidates": ["half base times height", "photosynthesis", "cells"]}).json()
    assert sorted(score["index"] for score in body["scores"]) == [0, 1, 2]
    probabilities = [score["probability"] for score in body["scores"]]
    assert probabilities == sorted(probabilities, reverse=True)
    too_many = client.post("/rerank", json={"query": "q", "candidates": ["a"] * 5})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "candidates"]
    blank = client.post("/rerank", json={"query": "q", "candidates": ["a", " "]})
    assert blank.json()["detail"][0]["loc"] == ["body", "candidates", 1]
    assert client.post("/rerank", json={"query": "q", "candidates": []}).status_code == 422


def test_tei_rerank_speaks_text_embeddings_inference(client: TestClient) -> None:
    """The TEI body and answer at /tei/rerank, with the same probabilities as edurank's /rerank."""
    texts = ["half base times height", "photosynthesis", "cells"]
    ranks = client.post("/tei/rerank", json={"query": "area of a triangle", "texts": texts}).json()
    ours = client.post("/rerank", json={"query": "area of a triangle", "candidates": texts}).json()["scores"]
    assert [r["index"] for r in ranks] == [s["index"] for s in ours]
    assert [r["score"] for r in ranks] == pytest.approx([s["probability"] for s in ours])
    assert all(r["text"] is None for r in ranks)
    raw = client.post("/tei/rerank", json={"query": "area of a triangle", "texts": texts, "raw_scores": True,
                                           "return_text": True}).json()
    assert [r["score"] for r in raw] == pytest.approx([s["logit"] for s in ours])
    assert [r["text"] for r in raw] == [texts[r["index"]] for r in raw]
    blank = client.post("/tei/rerank", json={"query": "q", "texts": ["a", ""]})
    assert blank.status_code == 422 and blank.json()["detail"][0]["loc"] == ["body", "texts", 1]
    assert client.post("/tei/embed", json={"inputs": "one text"}).status_code == 200


def test_concurrent_reranks_and_recommends_each_get_their_own_answer(client: TestClient) -> None:
    """Requests at once share the retriever's and the cross-encoder's batches: each still gets exactly the
    scores it gets alone."""
    queries = ["area of a triangle", "adding fractions", "la célula", "photosynthesis"]
    candidates = ["half base times height", "common denominators", "cells"]

    def rerank(query: str) -> list[dict]:
        return client.post("/rerank", json={"query": query, "candidates": candidates}).json()["scores"]

    def recommend(query: str) -> list[str]:
        response = client.post("/recommend", json={"topic": {"title": query}, "top_k": 3})
        return [item["id"] for item in response.json()["items"]]

    alone = {q: (rerank(q), recommend(q)) for q in queries}
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda q: (q, rerank(q), recommend(q)), queries * 4))
    for query, scores, items in together:
        assert [s["index"] for s in scores] == [s["index"] for s in alone[query][0]]
        assert all(abs(a["logit"] - b["logit"]) < 1e-4 for a, b in zip(scores, alone[query][0], strict=True))
        assert items == alone[query][1]


def test_metrics_export_requests_and_stages(client: TestClient) -> None:
    client.post("/recommend", json={"topic_id": "fr_add"})
    text = client.get("/metrics").text
    assert 'edurank_requests_total{route="/recommend",status="200"}' in text
    for stage in ("encode", "search", "rerank"):
        assert f'edurank_stage_seconds_count{{stage="{stage}"}}' in text
    for model in ("retriever", "reranker"):  # both ran in the batchers shared across requests
        assert f'edurank_batch_size_count{{model="{model}"}}' in text
    assert 'edurank_request_seconds_bucket{le="0.005",route="/recommend"}' in text


def test_not_ready_until_loaded_and_the_reason_when_loading_fails(settings: Settings, tmp_path: Path) -> None:
    broken = settings.model_copy(update={"catalog": tmp_path / "missing", "background_load": False})
    with TestClient(create_app(broken)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503 and "no such directory" in ready.json()["detail"]
        assert "$EDURANK_CATALOG" in ready.json()["detail"] and str(tmp_path) not in ready.text  # no server paths
        response = client.post("/recommend", json={"topic_id": "fr"})
        assert response.status_code == 503 and "not ready" in response.json()["detail"][0]["msg"]
        assert str(tmp_path) not in response.text


def test_a_reranker_that_fails_to_load_turns_off_reranking_only(settings: Settings, tmp_path: Path) -> None:
    missing = settings.model_copy(update={"reranker": str(tmp_path / "gone")})
    with TestClient(create_app(missing)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["registry"]["reranker"] is False
        assert "reranker" in ready.json()["registry"]["problems"] and str(tmp_path) not in ready.text
        body = client.post("/recommend", json={"topic_id": "geo_area"}).json()
        assert body["items"] and body["reranked"] is False


def test_a_stale_index_is_rebuilt_only_when_allowed(settings: Settings, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog2", correlations=[{"topic_id": "fr_mul", "content_ids": "c3"}])
    no_build = settings.model_copy(update={"catalog": catalog, "build_index": False})
    with TestClient(create_app(no_build)) as client:
        assert "another version of the catalog" in client.get("/ready").json()["detail"]
    rebuild = settings.model_copy(update={"catalog": catalog, "artifacts": tmp_path / "artifacts"})
    with TestClient(create_app(rebuild)) as client:
        assert client.get("/ready").status_code == 200


@pytest.mark.parametrize(("route", "body", "field"), [
    ("/recommend", '{"topic": {"title": "x", "language": "\\ud800"}}', ["body", "topic", "language"]),
    ("/recommend", '{"topic": {"title": "x", "description": "\\ud800"}}', ["body", "topic", "description"]),
    ("/recommend", '{"topic": {"title": "x", "breadcrumbs": "\\udfff"}}', ["body", "topic", "breadcrumbs"]),
    ("/recommend", '{"topic": {"title": "x"}, "languages": ["en", "\\ud800"]}', ["body", "languages"]),
    ("/recommend", '{"topic": {"title": "x"}, "kinds": ["\\ud800"]}', ["body", "kinds"]),
    ("/rerank", '{"query": "q", "candidates": ["a", "\\ud800"]}', ["body", "candidates"]),
    ("/v1/embeddings", '{"input": ["\\ud800"]}', ["body", "input"]),
    ("/embed", '{"inputs": "\\ud800"}', ["body", "inputs"]),
    ("/score-essay", '{"essays": [{"text": "\\ud800"}]}', ["body", "essays", 0, "text"]),
    ("/classify", '{"answer": "\\ud800"}', ["body", "answer"]),
])
def test_a_lone_surrogate_anywhere_is_a_422_naming_its_field(client: TestClient, route: str, body: str,
                                                             field: list[str | int]) -> None:
    response = client.post(route, content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == field and "lone surrogate" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("name", ["x" * 5_000, "x\\ud800"])
def test_an_unknown_field_name_is_echoed_short_and_encodable(client: TestClient, name: str) -> None:
    body = '{"topic_id": "geo_area", "' + name + '": 1}'
    response = client.post("/recommend", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422 and len(response.content) < 1_000
    assert all(len(str(part)) <= 203 for part in response.json()["detail"][0]["loc"])


@pytest.mark.parametrize(("route", "body", "field"), [
    ("/recommend", {"topic_id": "geo_area", "top_k": True}, "top_k"),
    ("/recommend", {"topic_id": "geo_area", "top_k": "5"}, "top_k"),
    ("/recommend", {"topic_id": "geo_area", "top_k": 2.5}, "top_k"),  # 2.0 is an integer, as JSON Schema says
    ("/recommend", {"topic_id": "geo_area", "threshold": "0.5"}, "threshold"),
    ("/recommend", {"topic_id": "geo_area", "rerank": "false"}, "rerank"),
    ("/recommend", {"topic": {"title": 5}}, "topic"),
    ("/v1/embeddings", {"input": "x", "dimensions": "384"}, "dimensions"),
    ("/tei/rerank", {"query": "q", "texts": ["a"], "raw_scores": 1}, "raw_scores"),
])
def test_numbers_booleans_and_text_are_strict(client: TestClient, route: str, body: dict, field: str) -> None:
    response = client.post(route, json=body)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][1] == field


def test_an_integer_is_a_valid_float(client: TestClient) -> None:
    assert client.post("/recommend", json={"topic_id": "geo_area", "threshold": 1}).status_code == 200
