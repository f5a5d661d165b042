"""POST /classify over a small classifier trained on synthetic responses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edurank.service.app import create_app
from edurank.service.settings import Settings
from edurank.training.classifier import train_classifier
from edurank.training.config import ClassifierConfig
from tests.conftest import response_rows, write_catalog, write_responses
from tests.service import assert_names_the_field, post_untrained

KNOWN = {"question_id": "1", "answer": "5", "explanation": "you add one more at the end"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("classify-service")
    data = write_responses(root / "responses.csv", response_rows(40))
    train_classifier(data, root / "artifacts" / "classifier",
                     ClassifierConfig(folds=2, max_length=48, freeze_layers=5, epochs=1, batch_size=8))
    settings = Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"),
                        background_load=False, max_response_chars=100, max_text_chars=200, max_responses=3)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_known_question_gets_three_labels_its_answer_allows(client: TestClient) -> None:
    response = client.post("/classify", json=KNOWN)
    assert response.status_code == 200
    body = response.json()
    result = body["results"][0]
    assert result["known_question"] and result["question_id"] == "1" and len(result["labels"]) == 3
    assert all(label["category"].startswith("False_") for label in result["labels"][:2])
    probabilities = [label["probability"] for label in result["labels"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    first = result["labels"][0]
    assert first["label"] == f"{first['category']}:{first['misconception'] or 'NA'}"
    assert client.get("/ready").json()["registry"]["versions"]["classifier"] == body["model_version"]


def test_a_batch_keeps_order_ids_and_flags_unseen_questions(client: TestClient) -> None:
    responses = [{**KNOWN, "id": "a", "question_id": 1},
                 {"id": "b", "question_text": "Name a prime number.", "answer": "9", "explanation": "it is odd"},
                 {"id": "c", "question_text": "What is half of 10?", "answer": "5", "explanation": "ten in two"}]
    results = client.post("/classify", json={"responses": responses}).json()["results"]
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert [r["known_question"] for r in results] == [True, False, True]
    assert results[1]["question_id"] is None and results[2]["question_id"] == "2"
    metrics = client.get("/metrics").text
    assert 'edurank_stage_seconds_count{stage="tokenise"}' in metrics
    assert 'edurank_requests_total{route="/classify",status="200"}' in metrics


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bodies = [{**KNOWN, "explanation": text} for text in ("you add one more at the end", "not sure", "i guessed")]
    bodies += [{"question_id": "2", "answer": "20", "explanation": "half means times two"}]
    alone = [client.post("/classify", json=body).json()["results"][0]["labels"] for body in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda body: client.post("/classify", json=body).json()["results"][0]["labels"],
                                 bodies * 4))
    assert together == alone * 4
    assert 'edurank_batch_size_count{model="classifier"}' in client.get("/metrics").text


@pytest.mark.parametrize(("body", "loc", "message"), [
    ({"question_id": "1", "answer": "5"}, ["body", "explanation"], "required"),
    ({"question_id": "1", "explanation": "x"}, ["body", "answer"], "required"),
    ({"answer": "5", "explanation": "x"}, ["body", "question_id"], "question_id or question_text"),
    ({**KNOWN, "explanation": "  "}, ["body", "explanation"], "empty"),
    ({**KNOWN, "explanation": "x" * 101}, ["body", "explanation"], "limit is 100"),
    ({**KNOWN, "answer": ""}, ["body", "answer"], "empty"),
    ({**KNOWN, "question_text": "q" * 201}, ["body", "question_text"], "limit is 200"),
    ({**KNOWN, "explanation": 3}, ["body", "explanation"], "string"),
    ({"responses": [KNOWN] * 4}, ["body", "responses"], "limit is 3"),
    ({"responses": []}, ["body", "responses"], "at least one"),
    ({"responses": [KNOWN, {**KNOWN, "answer": None}]}, ["body", "responses", 1, "answer"], "required"),
    ({**KNOWN, "responses": [KNOWN]}, ["body", "question_id"], "not both"),
    ({**KNOWN, "extra": 1}, ["body", "extra"], "not permitted"),
])
def test_bad_requests_get_422_naming_the_field(client: TestClient, body: dict, loc: list, message: str) -> None:
    assert_names_the_field(client.post("/classify", json=body), 422, loc, message)


def test_without_a_trained_classifier_the_route_says_how_to_get_one(tmp_path: Path) -> None:
    assert "edurank train classifier" in post_untrained(tmp_path, "/classify", KNOWN)["msg"]
