"""The OpenAPI document and the server agree: every request body the document allows is taken (no 422, no
500), ids are bounded, and the shapes the server used to refuse behind a schema that allowed them (`800.0` for
an integer, `essays: []`, `""` among rerank candidates, a blank text, a batch beside a single classify response)
are now refused by the schema or taken by the server. Bodies come from the served /openapi.json itself, through
hypothesis-jsonschema.

Some refusals depend on what is loaded, not on a body's shape, and no static schema can state them: limits set
by settings (the field descriptions name them), the catalog's languages and kinds, and the retriever's
vocabulary and vector size. Those are the only 422s allowed here, recognised by their messages."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.reranker.decision import DecisionRule
from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import write_catalog

RUNTIME = re.compile(r"the limit is|above the limit|the catalog has|vocabulary|decode to no text|dimensions|"
                     r"the model reads")
NOT_LOADED = ("/score-essay", "/classify")  # no essay scorer or classifier here: 503 once the body is valid
ROUTES = ["/recommend", "/rerank", "/tei/rerank", "/v1/rerank", "/v2/rerank", "/v1/embeddings", "/embed", "/tei",
          "/tei/embed", "/score-essay", "/classify", "/catalog/items", "/catalog/items/delete", "/feedback",
          "/feedback/{decision_id}/undo", "/review/decisions", "/review/decisions/{decision_id}/undo",
          "/embed-content", "/embed-topics"]
# bodies per route: EDURANK_FUZZ_EXAMPLES, as for tests/service/test_fuzz.py (the same cases every run)
PROPERTY = settings(max_examples=int(os.environ.get("EDURANK_FUZZ_EXAMPLES", "10")), derandomize=True,
                    deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("schemas")
    reranker = Reranker.load(None, PairFormat(16, 32))
    reranker.rule = DecisionRule(threshold=0.0, max_items=3, tuned=True)
    reranker.save(root / "reranker")
    app = create_app(Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"),
                              reranker=str(root / "reranker"), train_ranker=False, background_load=False))
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def bodies(client: TestClient) -> dict[str, dict[str, Any]]:
    """Each POST route's request body schema, standalone (the document's components beside it)."""
    document = client.get("/openapi.json").json()
    return {path: {**operations["post"]["requestBody"]["content"]["application/json"]["schema"],
                   "components": document["components"]}
            for path, operations in document["paths"].items() if "requestBody" in operations.get("post", {})}


def test_every_post_route_with_a_body_is_checked(bodies: dict[str, dict[str, Any]]) -> None:
    assert set(bodies) == set(ROUTES)


@pytest.mark.parametrize("path", ROUTES)
def test_a_body_the_document_allows_is_never_refused_for_its_shape(client: TestClient,
                                                                   bodies: dict[str, dict[str, Any]],
                                                                   path: str) -> None:
    url = path.replace("{decision_id}", "1")

    @PROPERTY
    @given(from_schema(bodies[path]))
    def check(body: Any) -> None:
        answer = client.post(url, json=body)
        problem = answer.json()["detail"][0] if answer.status_code >= 400 else {}
        if answer.status_code == 422:
            assert RUNTIME.search(problem["msg"]), (body, answer.text)
        elif answer.status_code >= 500:
            assert answer.status_code == 503 and path in NOT_LOADED, (body, answer.text)

    check()


@pytest.mark.parametrize(("path", "body", "loc"), [
    ("/score-essay", {"essays": []}, ["body", "essays"]),
    ("/score-essay", {"text": " \n"}, ["body", "text"]),
    ("/rerank", {"query": "area", "candidates": ["", "triangles"]}, ["body", "candidates", 0]),
    ("/v1/rerank", {"query": "area", "documents": [{"text": "\t"}]}, ["body", "documents", 0]),
    ("/embed", {"inputs": []}, ["body", "inputs"]),
    ("/v1/embeddings", {"input": [[]]}, ["body", "input"]),
    ("/v1/embeddings", {"input": [-1]}, ["body", "input"]),
    ("/classify", {"responses": []}, ["body", "responses"]),
    ("/classify", {"answer": "A", "explanation": "because"}, ["body", "question_id"]),
    ("/classify", {"question_id": 1, "answer": "A", "explanation": "x", "responses": [{}]}, ["body", "question_id"]),
    ("/feedback", {"decisions": [{"topic_id": "t", "content_id": "c", "decision": "accepted",
                                  "versions": {"ranker": ""}}]}, ["body", "decisions", 0, "versions"]),
    ("/recommend", {"topic": {"title": "Fractions", "description": ""}}, ["body", "topic", "description"]),
    ("/embed-content", {"resources": [{"id": "6f5b8e1c-1d0e-4c1a-9f0e-2b1c3d4e5f60", "title": "t",
                                       "channel_id": "6f5b8e1c-1d0e-4c1a-9f0e-2b1c3d4e5f61", "description": "",
                                       "content_id": "6f5b8e1c-1d0e-4c1a-9f0e-2b1c3d4e5f62",
                                       "channel_version": 2**63}]}, ["body", "resources", 0, "channel_version"]),
])
def test_a_shape_the_server_refuses_is_one_the_document_refuses(client: TestClient,
                                                                 bodies: dict[str, dict[str, Any]], path: str,
                                                                 body: dict[str, Any], loc: list[str | int]) -> None:
    assert not Draft202012Validator(bodies[path]).is_valid(body)
    answer = client.post(path, json=body)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][:len(loc)] == loc, answer.text


def test_an_integral_float_is_an_integer_as_json_schema_says(client: TestClient) -> None:
    answer = client.post("/recommend", json={"topic_id": "fr_add", "top_k": 2.0, "candidates": 8.0})
    assert answer.status_code == 200 and len(answer.json()["items"]) <= 2
    for bad in (2.5, True, "2"):
        assert client.post("/recommend", json={"topic_id": "fr_add", "top_k": bad}).status_code == 422


@pytest.mark.parametrize(("path", "body", "loc"), [
    ("/score-essay", {"essays": [{"id": "x" * 1_000_000, "text": "An essay."}]}, ["body", "essays", 0, "id"]),
    ("/classify", {"id": "x" * 1_000_000, "question_id": 1, "answer": "A", "explanation": "x"}, ["body", "id"]),
    ("/recommend", {"topic_id": "x" * 1_000_000}, ["body", "topic_id"]),
    ("/catalog/items", {"items": [{"id": "x" * 129, "title": "t", "language": "en"}]}, ["body", "items", 0, "id"]),
    ("/recommend", {"topic_id": "fr_add", "channels": ["c"] * 257}, ["body", "channels"]),
])
def test_ids_and_filters_are_bounded_and_never_echoed_whole(client: TestClient, path: str, body: dict[str, Any],
                                                            loc: list[str | int]) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == loc and len(answer.content) < 2000
