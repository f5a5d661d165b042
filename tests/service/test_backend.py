"""EDURANK_BACKEND: the service serves the newest ONNX export of its retriever, cross-encoder and classifier,
or refuses to start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from edurank.artifacts import LATEST, Manifest
from edurank.backends.export import EXPORTS
from edurank.cli.main import main
from edurank.service.app import create_app
from edurank.service.settings import Settings
from edurank.training.classifier import train_classifier
from edurank.training.config import ClassifierConfig
from tests.conftest import response_rows, write_catalog, write_responses
from tests.reranker.cross_encoder.test_export import publish_reranker


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("backend")
    exports = root / "artifacts" / EXPORTS
    assert main(["export", "--out", str(exports), "--check-items", "32"]) == 0
    reranker = publish_reranker(root / "artifacts" / "reranker")
    assert main(["export", "--model", str(reranker), "--out", str(exports), "--check-items", "32",
                 "--min-rank-agreement", "0.9"]) == 0  # an untrained scorer: near-ties among the random candidates
    responses = write_responses(root / "responses.csv", response_rows(40))
    classifier = train_classifier(responses, root / "artifacts" / "classifier",
                                  ClassifierConfig(folds=2, max_length=48, freeze_layers=5, epochs=1, batch_size=8))
    assert main(["export", "--model", str(classifier), "--data", str(responses), "--out", str(exports),
                 "--check-items", "40", "--max-metric-delta", "0.05"]) == 0  # 40 rows: one rank moved is 0.0125
    return Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"), backend="onnx-int8",
                    train_ranker=False, background_load=False)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_int8_exports_of_the_served_models_answer(client: TestClient, settings: Settings) -> None:
    ready = client.get("/ready").json()
    exports = (settings.artifacts / EXPORTS).glob("*/manifest.json")
    versions = {Manifest.read(path.parent).kind: path.parent.name for path in exports}
    assert ready["registry"]["backend"] == "onnx-int8"
    assert {k: ready["registry"]["versions"][k] for k in versions} == versions  # retriever, reranker, classifier
    assert set(versions) == {"retriever", "reranker", "classifier"}
    # the export's vectors get their own index: switching back to torch will not rebuild over this one
    assert (settings.index_root / LATEST).is_file() and settings.index_root.name == "index-onnx-int8"
    body = client.post("/recommend", json={"topic": {"title": "Adding fractions", "language": "en"}}).json()
    assert body["items"] and all(-1.0 <= item["retrieval_score"] <= 1.0 for item in body["items"])
    assert 'edurank_stage_seconds_count{stage="encode"}' in client.get("/metrics").text
    assert 'edurank_stage_seconds_count{stage="rerank"}' in client.get("/metrics").text
    scored = client.post("/rerank", json={"query": "Adding fractions",
                                          "candidates": ["Add fractions with unlike denominators", "Photosynthesis"]})
    assert scored.status_code == 200 and scored.json()["scores"][0]["index"] == 0
    classified = client.post("/classify", json={"question_id": "1", "answer": "5",
                                                "explanation": "you add one more at the end"})
    assert classified.status_code == 200 and classified.json()["results"][0]["known_question"]


def test_no_export_for_the_backend_refuses_to_start_with_the_command(settings: Settings) -> None:
    fp32 = settings.model_copy(update={"backend": "onnx"})
    with TestClient(create_app(fp32)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "no onnx export of the served retriever" in ready.json()["detail"]
        assert "edurank export --model bundled --backend onnx" in ready.json()["detail"]


def test_an_export_given_for_another_backend_is_refused(settings: Settings) -> None:
    export = settings.artifacts / EXPORTS
    torch = settings.model_copy(update={"backend": "torch", "retriever": str(export)})
    with TestClient(create_app(torch)) as client:
        detail = client.get("/ready").json()["detail"]
        assert "is an onnx-int8 export but EDURANK_BACKEND is torch" in detail
