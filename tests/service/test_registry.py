"""The registry's parts fail alone: a damaged index turns off the routes searching the catalog only, a broken newest
version of an optional model gives way to the previous good one, and a first ranker that cannot be trained
or written leaves the service serving retrieval, each with the reason in /ready."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edurank.artifacts import LATEST, MANIFEST, resolve
from edurank.essays.config import WindowSpec
from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.service.app import create_app
from edurank.service.registry import writable
from edurank.service.settings import Settings
from edurank.training import ranker as ranker_training
from edurank.training.classifier import train_classifier
from edurank.training.config import ClassifierConfig, EssayConfig
from edurank.training.essays import train_essays
from tests.conftest import (
    CORRELATIONS,
    TOPICS,
    essay_rows,
    response_rows,
    topic,
    write_catalog,
    write_essays,
    write_responses,
)
from tests.service.test_faults import halve_ids

KEY = {"X-API-Key": "admin-key-0123456789"}
ROUTES = {"essays": ("/score-essay", {"text": "Students who study at home can plan their day."}),
          "classifier": ("/classify", {"question_id": "1", "answer": "5", "explanation": "you add one more"})}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Artifacts holding a small essay scorer and classifier, a tiny catalog and its index."""
    root = tmp_path_factory.mktemp("registry")
    train_essays(write_essays(root / "essays.csv", essay_rows(30)), root / "artifacts" / "essays",
                 EssayConfig(paths=("fast",), folds=2, windows=WindowSpec(max_tokens=32, stride=24)))
    train_classifier(write_responses(root / "responses.csv", response_rows(40)), root / "artifacts" / "classifier",
                     ClassifierConfig(folds=2, max_length=48, freeze_layers=5, epochs=1, batch_size=8))
    settings = Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"), train_ranker=False,
                        background_load=False)
    with TestClient(create_app(settings)) as client:  # builds the index
        assert client.get("/ready").status_code == 200
    return root


@pytest.fixture
def settings(models: Path, tmp_path: Path) -> Settings:
    """Settings over a copy of the module's artifacts, which a test may damage."""
    shutil.copytree(models / "artifacts", tmp_path / "artifacts")
    return Settings(artifacts=tmp_path / "artifacts", catalog=models / "catalog", train_ranker=False,
                    background_load=False, build_index=False, api_key=KEY["X-API-Key"])


def publish_broken(root: Path) -> str:
    """A newer version of the artifact under `root` whose weights no longer match its manifest, made LATEST."""
    good = resolve(root)
    broken = root / "29991231-000000.000000-broken00"
    shutil.copytree(good, broken)
    manifest = json.loads((broken / MANIFEST).read_text())
    (broken / MANIFEST).write_text(json.dumps({**manifest, "version": broken.name}))
    damaged = broken / next(name for name in manifest["files"] if name.endswith(".safetensors"))
    damaged.write_bytes(damaged.read_bytes()[::-1])
    (root / LATEST).write_text(broken.name + "\n")
    return broken.name


def test_a_damaged_index_turns_off_its_routes_only(settings: Settings, tmp_path: Path) -> None:
    """The routes searching the catalog are off; the retriever and the cross-encoder serve on (/embed,
    /rerank), and `versions` names exactly what serves."""
    halve_ids(resolve(settings.index_root))
    Reranker.load(None, PairFormat(16, 32)).save(tmp_path / "reranker")
    with TestClient(create_app(settings.model_copy(update={"reranker": str(tmp_path / "reranker")}))) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "damaged" in ready.json()["detail"]
        described = ready.json()["registry"]
        assert described["retrieval"] is False and described["essays"] is True and described["classifier"] is True
        assert described["reranker"] is True and described["ranker"] is False
        assert "ids.parquet" in described["problems"]["retrieval"]
        versions = described["versions"]
        assert versions["index"] is None and versions["ranker"] is None and versions["retriever"] is not None
        for route, body in [*ROUTES.values(), ("/v1/embeddings", {"input": "fractions"}),
                            ("/embed", {"inputs": "fractions"}),
                            ("/rerank", {"query": "fractions", "candidates": ["a", "b"]})]:
            assert client.post(route, json=body).status_code == 200, route
        assert client.get("/v1/models").status_code == 200
        for route, body in [("/recommend", {"topic_id": "fr_add"}),
                            ("/recommend", {"topic": {"title": "fractions"}})]:
            off = client.post(route, json=body)
            assert off.status_code == 503 and "ids.parquet" in off.json()["detail"][0]["msg"], route
            assert str(tmp_path) not in off.text
        assert client.get("/catalog/").status_code == client.get("/connect").status_code == 503  # Studio's check


def test_a_read_only_live_folder_serves_and_refuses_live_writes(settings: Settings, tmp_path: Path) -> None:
    """A read-only artifacts mount: the live journal's folder cannot be made (under a regular file here, as
    root ignores permission bits), yet the index side serves; only the live writes answer 503, with why."""
    (tmp_path / "file").write_text("")
    read_only = settings.model_copy(update={"live_dir": tmp_path / "file" / "index-live"})
    resource = {"id": "8e0c0b3c-5f1e-4a59-9a1e-2c1c7d0e8a10", "channel_id": "0b7a2f7e-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
                "content_id": "5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f", "channel_version": 1, "title": "Penguins",
                "description": "Estimating penguin colonies", "language": "en"}
    with TestClient(create_app(read_only)) as client:
        assert client.get("/ready").status_code == 200
        assert client.post("/recommend", json={"topic_id": "fr_add"}).status_code == 200
        for route, body in (("/catalog/items", {"items": [{"id": "p1", "title": "Penguins", "language": "en"}]}),
                            ("/embed-content", {"resources": [resource]})):
            off = client.post(route, json=body)
            assert off.status_code == 503 and "live writes are off" in off.json()["detail"][0]["msg"], route
            assert str(tmp_path) not in off.text
        assert client.post("/recommend", json={"topic_id": "fr_add"}).status_code == 200


@pytest.mark.parametrize("kind", ["essays", "classifier"])
def test_a_broken_newest_version_gives_way_to_the_previous_good_one(settings: Settings, kind: str) -> None:
    good = resolve(settings.artifacts / kind).name
    route, body = ROUTES[kind]
    with TestClient(create_app(settings)) as client:
        broken = publish_broken(settings.artifacts / kind)
        swapped = client.post("/admin/reload", headers=KEY)  # on reload: served, not refused
        assert swapped.status_code == 200 and swapped.json()["serving"][kind] == good
        problem = client.get("/ready").json()["registry"]["problems"][kind]
        assert broken in problem and f"serving the previous good version {good}" in problem
        assert client.post(route, json=body).json()["model_version"] == good
    with TestClient(create_app(settings)) as client:  # after a restart
        ready = client.get("/ready").json()
        assert ready["registry"]["versions"][kind] == good and broken in ready["registry"]["problems"][kind]
        assert "does not match its sha256" in ready["registry"]["problems"][kind]
        assert str(settings.artifacts) not in json.dumps(ready)
        assert client.post(route, json=body).status_code == 200


@pytest.mark.parametrize("failure", ["read-only artifacts", "training fails"])
def test_a_first_ranker_that_cannot_be_made_leaves_retrieval_serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     failure: str) -> None:
    trained: list[Path] = []

    def train(catalog, encoders, out, config):  # noqa: ANN001, ANN202 - train_ranker's signature
        trained.append(out)
        raise OSError(errno.EROFS, "Read-only file system", str(out))

    monkeypatch.setattr(ranker_training, "train_ranker", train)
    extra = [topic(f"t{i}", f"Topic {i}", "root", level=1) for i in range(6)]  # ten linked topics: enough to train
    catalog = write_catalog(tmp_path / "catalog", TOPICS + extra,
                            correlations=CORRELATIONS + [{"topic_id": f"t{i}", "content_ids": f"c{i + 1}"}
                                                         for i in range(6)])
    artifacts = tmp_path / "artifacts"
    if failure == "read-only artifacts":
        (tmp_path / "file").write_text("")
        artifacts = tmp_path / "file" / "artifacts"  # nothing can be made there (root ignores permission bits)
    settings = Settings(artifacts=artifacts, catalog=catalog, index=tmp_path / "index", background_load=False,
                        feedback_db=str(tmp_path / "feedback.sqlite"))
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["registry"]["ranker"] is False
        problem = ready.json()["registry"]["problems"]["ranker"]
        assert ("is not writable" if failure == "read-only artifacts" else "Read-only file system") in problem
        assert str(tmp_path) not in ready.text
        assert trained == ([] if failure == "read-only artifacts" else [artifacts / "ranker"])
        assert client.post("/recommend", json={"topic_id": "fr_add"}).json()["items"]


def test_writable_is_false_where_nothing_can_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert writable(tmp_path / "new" / "ranker") and not writable(tmp_path / "file" / "ranker")
