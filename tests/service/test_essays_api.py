"""POST /score-essay over a small essay scorer trained (fast path) on synthetic essays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edurank.essays.config import WindowSpec
from edurank.service.app import create_app
from edurank.service.settings import Settings
from edurank.training.config import EssayConfig
from edurank.training.essays import train_essays
from tests.conftest import essay_rows, write_catalog, write_essays
from tests.service import assert_names_the_field, post_untrained

TRAITS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("essays-service")
    data = write_essays(root / "essays.csv", essay_rows(30))
    train_essays(data, root / "artifacts" / "essays",
                 EssayConfig(paths=("fast",), folds=2, windows=WindowSpec(max_tokens=32, stride=24)))
    settings = Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"),
                        background_load=False, max_essay_chars=300, max_essays=3)
    with TestClient(create_app(settings)) as client:
        yield client


def test_one_essay_gets_six_scores_and_their_rounding(client: TestClient) -> None:
    response = client.post("/score-essay", json={"text": "Students who study at home can plan their day."})
    assert response.status_code == 200
    body = response.json()
    assert body["traits"] == TRAITS and body["model_version"]
    result = body["results"][0]
    assert result["id"] is None and list(result["scores"]) == TRAITS
    for trait in TRAITS:
        assert 1.0 <= result["scores"][trait] <= 5.0
        assert result["rounded"][trait] == round(result["scores"][trait] * 2) / 2
    assert client.get("/ready").json()["registry"]["versions"]["essays"] == body["model_version"]


def test_a_batch_keeps_order_and_ids(client: TestClient) -> None:
    essays = [{"id": "good", "text": "In conclusion, a balance between online and classroom learning is wise."},
              {"id": "poor", "text": "i think school is good becuase u learn alot of stuff"}]
    body = client.post("/score-essay", json={"essays": essays}).json()
    assert [r["id"] for r in body["results"]] == ["good", "poor"]
    metrics = client.get("/metrics").text
    assert 'edurank_stage_seconds_count{stage="model"}' in metrics
    assert 'edurank_requests_total{route="/score-essay",status="200"}' in metrics


@pytest.mark.parametrize(("body", "loc", "message"), [
    ({"text": ""}, ["body", "text"], "empty"),
    ({"text": "   \n"}, ["body", "text"], "empty"),
    ({"text": "x" * 301}, ["body", "text"], "limit is 300"),
    ({"text": 42}, ["body", "text"], "string"),
    ({"essays": [{"text": "fine"}, {"text": ""}]}, ["body", "essays", 1, "text"], "empty"),
    ({"essays": [{"text": "a"}] * 4}, ["body", "essays"], "limit is 3"),
    ({"essays": []}, ["body", "essays"], "at least one"),
    ({"essays": [{"id": "a"}]}, ["body", "essays", 0, "text"], "required"),
    ({}, ["body"], "exactly one of text and essays"),
    ({"text": "a", "essays": [{"text": "b"}]}, ["body"], "exactly one of text and essays"),
    ({"text": "a", "extra": 1}, ["body", "extra"], "not permitted"),
])
def test_bad_requests_get_422_naming_the_field(client: TestClient, body: dict, loc: list, message: str) -> None:
    assert_names_the_field(client.post("/score-essay", json=body), 422, loc, message)


def test_without_a_trained_scorer_the_route_says_how_to_get_one(tmp_path: Path) -> None:
    assert "edurank train essays" in post_untrained(tmp_path, "/score-essay", {"text": "An essay."})["msg"]
