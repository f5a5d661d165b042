"""Kolibri Studio's recommendation contract (le-utils' schemas), driven as Studio drives it: `requests` against a
real uvicorn on loopback, over the bundled sample catalog, through a restart; and property tests whose bodies
hypothesis-jsonschema generates from the very schemas Studio's client validates against."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from edurank.service.app import create_app
from edurank.service.schemas.studio import CONTENT_SCHEMA, TOPICS_SCHEMA
from edurank.service.settings import Settings
from tests.conftest import served, write_catalog

NEW_ITEMS = [("Counting emperor penguins on the Antarctic sea ice",
              "Scientists count emperor penguin colonies from satellite images of the sea ice."),
             ("Why volcanoes erupt", "Magma, pressure and gas: what makes a volcano erupt."),
             ("Reading a bus timetable", "Practise reading times and routes from a bus timetable.")]


def uid() -> str:
    return str(uuid.uuid4())


def resource(title: str, description: str, channel: str, version: int = 1) -> dict[str, Any]:
    return {"id": uid(), "channel_id": channel, "content_id": uid(), "channel_version": version, "title": title,
            "description": description, "language": "en",
            "files": [{"url": "http://localhost:8080/content/video.mp4", "preset": "high_res_video"}]}


def topic(title: str, description: str = "") -> dict[str, Any]:
    return {"id": uid(), "channel_id": uid(), "title": title, "description": description, "language": "en",
            "ancestors": [{"id": uid(), "title": "Polar science", "description": "", "level": 1},
                          {"id": uid(), "title": "Biology", "description": "", "level": 0}]}


def recommend(base: str, body: dict[str, Any], override: bool) -> dict[str, Any]:
    """As Studio calls it: a Python bool through `requests` (`override_threshold=True`), raising on 4xx/5xx."""
    response = requests.post(f"{base}/recommend", params={"override_threshold": override}, json=body, timeout=100)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def sample_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(artifacts=tmp_path_factory.mktemp("studio") / "artifacts", background_load=False)


def test_the_studio_flow_end_to_end_through_a_restart(sample_settings: Settings) -> None:
    channel = uid()
    ask = topic("Counting emperor penguins on sea ice", "satellite images of penguin colonies")
    with served(create_app(sample_settings)) as base:
        connected = requests.get(f"{base}/connect", timeout=5)
        assert connected.ok and connected.json() == {"status": "OK"}  # Studio counts only this as connected
        assert requests.get(f"{base}/stable/connect", timeout=5).json() == {"status": "OK"}
        resources = [resource(title, text, channel) for title, text in NEW_ITEMS]
        added = requests.post(f"{base}/embed-content", json={"resources": resources,
                                                             "metadata": {"channel_id": channel}}, timeout=60)
        assert added.status_code == 200 and added.json()["written"] == len(NEW_ITEMS)
        kept = recommend(base, {"topics": [ask], "metadata": {"channel_id": ask["channel_id"]}}, False)
        more = recommend(base, {"topics": [ask]}, True)
    answer = kept["topics"][0]
    assert answer["id"] == ask["id"]
    best = answer["recommendations"][0]
    assert best["id"] == uuid.UUID(resources[0]["id"]).hex and best["channel_id"] == uuid.UUID(channel).hex
    assert best["rank"] == 1 and 0.0 <= best["similarity"] <= 1.0
    assert [r["rank"] for r in answer["recommendations"]] == list(range(1, len(answer["recommendations"]) + 1))
    assert set(best) == {"id", "channel_id", "title", "description", "similarity", "rank"}
    overridden = more["topics"][0]["recommendations"]
    assert len(overridden) > len(answer["recommendations"])
    assert overridden[:len(answer["recommendations"])] == answer["recommendations"]  # the kept ones first

    with served(create_app(sample_settings)) as base:  # a restart: the live items come back from the journal
        assert recommend(base, {"topics": [ask], "metadata": {"channel_id": ask["channel_id"]}}, False) == kept
        stable = requests.post(f"{base}/stable/recommend", params={"override_threshold": True},
                               json={"topics": [ask]}, timeout=100)
        assert stable.ok and stable.json() == more


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("studio-properties")
    settings = Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"), train_ranker=False,
                        background_load=False)
    with TestClient(create_app(settings)) as client:
        yield client


WITHIN_LIMITS = 32  # the routes' documented limits (EDURANK_MAX_TOPICS, EDURANK_MAX_UPSERT_ITEMS) are far above
INT64 = range(-(2**63), 2**63)  # channel_version is stored in 64 bits (a larger one is a 422 naming it)
PROPERTY = hypothesis_settings(max_examples=15, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ROUTES = [("/embed-content", CONTENT_SCHEMA, "resources"), ("/embed-topics", TOPICS_SCHEMA, "topics"),
          ("/recommend", TOPICS_SCHEMA, "topics")]


@pytest.mark.parametrize(("path", "schema", "items"), ROUTES)
def test_every_schema_valid_body_is_answered_200(client: TestClient, path: str, schema: dict[str, Any],
                                                 items: str) -> None:
    @PROPERTY
    @given(from_schema(schema))
    def check(body: dict[str, Any]) -> None:
        assume(len(body[items]) <= WITHIN_LIMITS)
        assume(all(r["channel_version"] in INT64 for r in body.get("resources", [])))
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        if path == "/recommend":
            assert [t["id"] for t in response.json()["topics"]] == [t["id"] for t in body["topics"]]

    check()


def mutations(schema: dict[str, Any], items: str) -> st.SearchStrategy[tuple[dict[str, Any], list[str | int]]]:
    """A valid body with one thing broken in its first item, and the `loc` the 422 must name: a required field
    dropped, a field of the wrong type, or a field the schema does not allow."""
    item_schema = schema["definitions"]["resource" if items == "resources" else "topic"]

    def broken(body: dict[str, Any], how: str, name: str) -> tuple[dict[str, Any], list[str | int]]:
        first = dict(body[items][0])
        if how == "drop":
            first.pop(name, None)
        elif how == "type":
            first[name] = 12345 if name != "channel_version" else "twelve"
        else:
            name = "unexpected_field"
            first[name] = "x"
        return {**body, items: [first, *body[items][1:]]}, ["body", items, 0, name]

    valid = from_schema(schema).filter(lambda body: 0 < len(body[items]) <= WITHIN_LIMITS and all(
        r["channel_version"] in INT64 for r in body.get("resources", [])))
    return st.builds(broken, valid, st.sampled_from(["drop", "type", "extra"]),
                     st.sampled_from(sorted(item_schema["required"])))


@pytest.mark.parametrize(("path", "schema", "items"), ROUTES)
def test_every_schema_violation_is_a_422_naming_the_field(client: TestClient, path: str, schema: dict[str, Any],
                                                          items: str) -> None:
    @PROPERTY
    @given(mutations(schema, items))
    def check(case: tuple[dict[str, Any], list[str | int]]) -> None:
        body, loc = case
        response = client.post(path, json=body)
        assert response.status_code == 422, response.text
        assert loc in [problem["loc"] for problem in response.json()["detail"]]

    check()


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20)


@pytest.mark.parametrize("path", ["/embed-content", "/embed-topics", "/recommend", "/stable/recommend"])
def test_no_body_gets_a_500(client: TestClient, path: str) -> None:
    @PROPERTY
    @given(st.one_of(JSON, st.fixed_dictionaries({"topics": JSON}), st.fixed_dictionaries({"resources": JSON})))
    def check(body: Any) -> None:
        response = client.post(path, json=body)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.json()["detail"][0]["loc"]

    check()


def test_an_older_channel_version_never_overwrites_a_newer_one(client: TestClient) -> None:
    channel = uid()
    newer = resource("Tectonic plates and earthquakes", "How plates move.", channel, version=3)
    older = {**newer, "title": "An outdated title", "channel_version": 2}
    assert client.post("/embed-content", json={"resources": [newer]}).json()["written"] == 1
    stale = client.post("/embed-content", json={"resources": [older]}).json()
    assert stale["written"] == 0 and stale["stale"] == [f"{channel}/{newer['id']}"]
    found = client.post("/recommend", json={"topic": {"title": "Tectonic plates and earthquakes"}, "rerank": False,
                                            "channels": [channel]}).json()["items"]
    assert [item["title"] for item in found] == ["Tectonic plates and earthquakes"]


def test_recommend_restricts_to_or_excludes_channels(client: TestClient) -> None:
    ours, theirs = uid(), uid()
    for channel in (ours, theirs):
        client.post("/embed-content", json={"resources": [resource("Fractions on a number line", "Place 1/2.",
                                                                   channel)]})
    asked = {"topic": {"title": "Fractions on a number line"}, "rerank": False, "top_k": 20}
    only = client.post("/recommend", json={**asked, "channels": [ours]}).json()["items"]
    assert {item["channel_id"] for item in only} == {ours}
    others = client.post("/recommend", json={**asked, "exclude_channels": [ours]}).json()["items"]
    assert ours not in {item["channel_id"] for item in others} and theirs in {i["channel_id"] for i in others}


def test_too_many_resources_say_the_limit(client: TestClient, tmp_path: Path) -> None:
    body = {"resources": [resource(f"Item {i}", "", uid()) for i in range(257)]}
    response = client.post("/embed-content", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "resources"] and "256" in response.json()["detail"][0]["msg"]
