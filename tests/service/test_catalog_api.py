"""edurank's catalog routes and what outlives a rebuild: items added through the live path stay served when
the index is rebuilt from changed catalog files (the journal no longer holds what a compaction folded in),
and a deleted item stays deleted."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from edurank.artifacts import Manifest
from edurank.retriever.catalog import load_catalog
from edurank.retriever.config import IndexConfig
from edurank.retriever.index_job import build_index
from edurank.retriever.model import BiEncoder
from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import CONTENT, item, write_catalog


def served_ids(client: TestClient, title: str, channel: str) -> list[str]:
    found = client.post("/recommend", json={"topic": {"title": title}, "rerank": False, "channels": [channel]})
    assert found.status_code == 200, found.text
    return [entry["id"] for entry in found.json()["items"]]


def test_live_items_survive_a_rebuild_from_changed_catalog_files(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    settings = Settings(artifacts=tmp_path / "artifacts", catalog=catalog, train_ranker=False, background_load=False,
                        compact_rows=2)
    kept = {"id": "penguins", "channel_id": "science", "channel_version": 2, "title": "Counting emperor penguins",
            "language": "en"}
    gone = {"id": "volcanoes", "channel_id": "science", "channel_version": 2, "title": "Why volcanoes erupt",
            "language": "en"}
    with TestClient(create_app(settings)) as client:
        assert client.post("/catalog/items", json={"items": [kept, gone]}).status_code == 200
        assert client.post("/catalog/items/delete", json={"items": [{"id": "volcanoes", "channel_id": "science",
                                                                     "channel_version": 3}]}).json()["deleted"]
        client.app.state.registry.live.compact()  # folds both changes into a version; the journal drops them
        state = client.get("/catalog/").json()
        assert state["compactions"] and state["live_rows"] == 0
        version = state["index_version"]

    write_catalog(catalog, content=[*CONTENT, item("c_new", "A new item in the files")])  # the files change
    with TestClient(create_app(settings)) as client:
        state = client.get("/catalog/").json()
        assert state["index_version"] != version  # rebuilt from the changed files
        assert served_ids(client, "Counting emperor penguins", "science") == ["penguins"]
        late = client.post("/catalog/items", json={"items": [{**gone, "title": "An old copy"}]}).json()
        assert late["stale"] == ["science/volcanoes"]  # the delete's channel version outlived the rebuild
        assert served_ids(client, "Why volcanoes erupt", "science") == ["penguins"]
    with TestClient(create_app(settings)) as client:  # the carried rows were published again: one more restart
        assert served_ids(client, "Counting emperor penguins", "science") == ["penguins"]


def test_ids_with_control_characters_are_refused_by_name(tmp_path: Path) -> None:
    settings = Settings(artifacts=tmp_path / "artifacts", catalog=write_catalog(tmp_path / "catalog"),
                        train_ranker=False, background_load=False)
    with TestClient(create_app(settings)) as client:
        for route, body in (("/catalog/items", {"items": [{"id": "a\u001fb", "title": "x", "language": "en"}]}),
                            ("/catalog/items/delete", {"items": [{"id": "a", "channel_id": "c\u0000"}]})):
            response = client.post(route, json=body)
            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"][-1] in ("id", "channel_id")
        titled = {"id": "8e0c0b3c-5f1e-4a59-9a1e-2c1c7d0e8a10", "channel_id": "0b7a2f7e-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
                  "content_id": "5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f", "channel_version": 1, "title": "",
                  "description": "Estimating penguin colonies from photographs", "language": "en"}
        assert client.post("/embed-content", json={"resources": [titled]}).json()["written"] == 1
        found = client.post("/recommend", json={"topic": {"title": "penguin colonies"}, "rerank": False})
        # a resource without a title is shown by the first words of its description
        assert found.status_code == 200
        assert found.json()["items"][0]["title"] == "Estimating penguin colonies from photographs"



def test_an_operators_index_run_keeps_the_live_items(tmp_path: Path) -> None:
    """`edurank index --incremental` over the same files, after the service compacted live items into the index:
    the new version keeps them (reusing their vectors), and the restarted service serves them."""
    catalog = write_catalog(tmp_path / "catalog")
    settings = Settings(artifacts=tmp_path / "artifacts", catalog=catalog, train_ranker=False, background_load=False)
    item_body = {"id": "penguins", "channel_id": "science", "title": "Counting emperor penguins", "language": "en"}
    with TestClient(create_app(settings)) as client:
        assert client.post("/catalog/items", json={"items": [item_body]}).status_code == 200
        client.app.state.registry.live.compact()
    published = build_index(BiEncoder.load(None), load_catalog(catalog), settings.index_root,
                            IndexConfig(incremental=True))
    manifest = Manifest.read(published)
    assert manifest.details["changes"] == {"since": manifest.details["changes"]["since"], "added": 0, "updated": 0,
                                           "deleted": 0}  # the live item is kept, its vector reused
    with TestClient(create_app(settings)) as client:
        assert client.get("/catalog/").json()["index_version"] == published.name
        assert served_ids(client, "Counting emperor penguins", "science") == ["penguins"]
