"""Hot swaps: POST /admin/reload (and the LATEST watcher) serve a newly published index without a restart,
refuse a damaged one while the old keeps serving, and never fail requests running meanwhile."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edurank.artifacts import resolve
from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.retriever.catalog import load_catalog
from edurank.retriever.index_job import build_index
from edurank.retriever.model import BiEncoder
from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import write_catalog
from tests.service.test_faults import halve_ids

KEY = {"X-API-Key": "admin-key-0123456789"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(artifacts=tmp_path / "artifacts", catalog=write_catalog(tmp_path / "catalog"), train_ranker=False,
                    background_load=False, api_key=KEY["X-API-Key"])


def publish_index(settings: Settings) -> str:
    """A new index version of the same catalog and encoder, as `edurank index` would publish it."""
    time.sleep(1.1)  # versions are named to the second
    return build_index(BiEncoder.load(None), load_catalog(settings.catalog), settings.index_root).name


def served_index(client: TestClient) -> str:
    return client.get("/ready").json()["registry"]["versions"]["index"]


def test_reload_swaps_in_a_new_index_and_refuses_a_damaged_one(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        first = served_index(client)
        assert client.post("/admin/reload").status_code == 401
        second = publish_index(settings)
        swapped = client.post("/admin/reload", headers=KEY)
        assert swapped.status_code == 200 and swapped.json()["previous"]["index"] == first
        assert swapped.json()["serving"]["index"] == second == served_index(client)

        damaged = publish_index(settings)
        halve_ids(resolve(settings.index_root))
        refused = client.post("/admin/reload", headers=KEY)
        assert refused.status_code == 409 and "ids.parquet" in refused.json()["detail"][0]["msg"]
        assert "previous versions keep serving" in refused.json()["detail"][0]["msg"]
        assert "run `edurank index` to publish a good version" in refused.json()["detail"][0]["msg"]
        assert "EDURANK_BUILD_INDEX" not in refused.text  # a reload never builds one
        assert str(settings.artifacts) not in refused.text
        assert served_index(client) == second != damaged
        items = client.post("/recommend", json={"topic_id": "fr_add", "rerank": False}).json()["items"]
        assert items[0]["title"] == "Adding fractions"
        metrics = client.get("/metrics").text
        assert 'edurank_reloads_total{outcome="swapped"} 1.0' in metrics
        assert 'edurank_reloads_total{outcome="refused"} 1.0' in metrics


def test_requests_during_reloads_all_succeed(settings: Settings) -> None:
    """Requests keep arriving from 4 threads for as long as 3 reloads take (each loads the models anew), so
    some are in flight at each swap: every one is answered."""
    with TestClient(create_app(settings)) as client:
        publish_index(settings)
        reloads: list[int] = []
        reloading = threading.Thread(target=lambda: reloads.extend(
            client.post("/admin/reload", headers=KEY).status_code for _ in range(3)))

        def recommend(i: int) -> int:
            return client.post("/recommend", json={"topic": {"title": f"fractions {i}"}}).status_code

        statuses: list[int] = []
        reloading.start()
        with ThreadPoolExecutor(max_workers=4) as pool:
            while reloading.is_alive():
                statuses += pool.map(recommend, range(len(statuses), len(statuses) + 8))
        reloading.join()
        assert reloads == [200] * 3 and len(statuses) >= 24 and set(statuses) == {200}


def test_the_watcher_swaps_in_what_is_published(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"watch_seconds": 0.2}))) as client:
        newer = publish_index(settings)
        deadline = time.monotonic() + 30
        while served_index(client) != newer:
            assert time.monotonic() < deadline, "the watcher did not swap in the new index"
            time.sleep(0.2)


def test_a_reload_that_would_lose_a_served_model_is_refused(settings: Settings, tmp_path: Path) -> None:
    reranker = Reranker.load(None, PairFormat(16, 32))
    reranker.save(tmp_path / "reranker")
    with TestClient(create_app(settings.model_copy(update={"reranker": str(tmp_path / "reranker")}))) as client:
        assert client.get("/ready").json()["registry"]["reranker"] is True
        shutil.rmtree(tmp_path / "reranker")
        refused = client.post("/admin/reload", headers=KEY)
        assert refused.status_code == 409 and "reranker" in refused.json()["detail"][0]["msg"]
        assert str(tmp_path) not in refused.text
        assert client.get("/ready").json()["registry"]["reranker"] is True
        assert client.post("/rerank", json={"query": "fractions", "candidates": ["a", "b"]}).status_code == 200


def test_started_before_its_index_it_waits_then_serves_what_is_published(settings: Settings) -> None:
    """The API up before the index job ends (podman-compose ignores service_completed_successfully): /ready says
    it is waiting, a reload is refused, and the index is loaded once published, without a restart (as a start
    loads it, by await_index alone: the LATEST watcher leaves that case to it)."""
    waiting = settings.model_copy(update={"build_index": False, "retry_seconds": 0.2, "background_load": True,
                                          "watch_seconds": 0.2})
    with TestClient(create_app(waiting)) as client:
        assert client.get("/health").status_code == 200
        deadline = time.monotonic() + 60
        while (ready := client.get("/ready")).json()["detail"] == "loading":
            assert time.monotonic() < deadline, "the first load did not end"
            time.sleep(0.1)
        assert ready.status_code == 503 and ready.json()["detail"].startswith("waiting for the index")
        assert "$EDURANK_ARTIFACTS/index" in ready.json()["detail"] and str(settings.artifacts) not in ready.text
        assert client.post("/recommend", json={"topic_id": "fr_add"}).status_code == 503
        refused = client.post("/admin/reload", headers=KEY)  # a set without the index side is no reload's result
        assert refused.status_code == 409 and "waiting for the index" in refused.json()["detail"][0]["msg"]
        version = publish_index(settings)
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the published index was not loaded"
            time.sleep(0.2)
        assert served_index(client) == version
        items = client.post("/recommend", json={"topic_id": "fr_add", "rerank": False}).json()["items"]
        assert items[0]["title"] == "Adding fractions"
