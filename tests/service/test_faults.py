"""Damaged artifacts that are still valid files, and models that are missing: the service refuses what it
cannot trust, says what is wrong without server paths, and (where allowed) rebuilds what it can."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from edurank.artifacts import MANIFEST, resolve
from edurank.retriever.content_index import IDS_FILE, INDEX_FILE
from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import write_catalog


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """Settings whose first start built an index, and that index's published version."""
    root = tmp_path_factory.mktemp("faults")
    settings = Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"), train_ranker=False,
                        background_load=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").status_code == 200
    return settings, resolve(settings.index_root)


def shuffle_ids(version: Path) -> None:
    ids = pl.read_parquet(version / IDS_FILE)
    ids.sample(fraction=1.0, shuffle=True, seed=3).reverse().write_parquet(version / IDS_FILE)


def halve_ids(version: Path) -> None:
    ids = pl.read_parquet(version / IDS_FILE)
    ids.head(len(ids) // 2).write_parquet(version / IDS_FILE)


def randomise_vectors(version: Path) -> None:
    data = bytearray((version / INDEX_FILE).read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes()
    data[-300:-44] = noise  # the vectors sit at the end of a flat index; its header stays readable
    (version / INDEX_FILE).write_bytes(bytes(data))


def first_title(client: TestClient, topic: str) -> str:
    return client.post("/recommend", json={"topic_id": topic, "rerank": False}).json()["items"][0]["title"]


@pytest.mark.parametrize(("damage", "says"), [
    (shuffle_ids, "ids.parquet"),  # same rows, other order: its size or its sha256 differs
    (halve_ids, "ids.parquet has"),
    (randomise_vectors, "index.faiss does not match its sha256"),
])
def test_a_damaged_index_is_refused_then_rebuilt_where_allowed(
        served: tuple[Settings, Path], tmp_path: Path, damage: Callable[[Path], None], says: str) -> None:
    settings, version = served
    artifacts = tmp_path / "artifacts"
    shutil.copytree(settings.artifacts, artifacts)
    damage(artifacts / "index" / version.name)
    strict = settings.model_copy(update={"artifacts": artifacts, "build_index": False})
    with TestClient(create_app(strict)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and says in ready.json()["detail"] and "damaged" in ready.json()["detail"]
        assert str(tmp_path) not in ready.text and "$EDURANK_ARTIFACTS/index" in ready.json()["detail"]
    with TestClient(create_app(strict.model_copy(update={"build_index": True}))) as client:
        assert client.get("/ready").status_code == 200
        assert first_title(client, "fr_add") == "Adding fractions"
        assert resolve(artifacts / "index").name != version.name  # a new version; the damaged one is not served


def test_an_index_whose_rows_disagree_with_its_id_map_is_refused_without_a_file_list(
        served: tuple[Settings, Path], tmp_path: Path) -> None:
    """Versions published before manifests listed their files are still checked for row counts."""
    settings, version = served
    artifacts = tmp_path / "artifacts"
    shutil.copytree(settings.artifacts, artifacts)
    copy = artifacts / "index" / version.name
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["files"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    halve_ids(copy)
    with TestClient(create_app(settings.model_copy(update={"artifacts": artifacts, "build_index": False}))) as client:
        detail = client.get("/ready").json()["detail"]
        assert "the vector index has 7 rows, the id map 3" in detail


@pytest.mark.parametrize(("setting", "route", "body"), [
    ("essays", "/score-essay", {"text": "An essay."}),
    ("classifier", "/classify", {"question_text": "1 + 1?", "answer": "2", "explanation": "one and one"}),
])
def test_a_missing_model_turns_off_its_route_only(served: tuple[Settings, Path], tmp_path: Path, setting: str,
                                                  route: str, body: dict) -> None:
    settings, _ = served
    with TestClient(create_app(settings.model_copy(update={setting: str(tmp_path / "gone")}))) as client:
        assert client.get("/ready").status_code == 200
        off = client.post(route, json=body)
        assert off.status_code == 503 and "failed to load" in off.json()["detail"][0]["msg"]
        assert str(tmp_path) not in off.text
        assert first_title(client, "fr_add") == "Adding fractions"
