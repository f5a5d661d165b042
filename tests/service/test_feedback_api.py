"""POST /feedback, GET /feedback, GET /feedback/current and POST /feedback/{id}/undo through the app, on SQLite and
PostgreSQL. The models never load here (the catalog is missing): feedback does not depend on them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.datastructures import State

from edurank.feedback import FeedbackStore
from edurank.feedback.store import failures
from edurank.service.app import create_app
from edurank.service.errors import RequestError
from edurank.service.handlers import feedback as handlers
from edurank.service.settings import Settings

KEY = "k" * 24


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    return Settings(artifacts=tmp_path / "artifacts", catalog=tmp_path / "no-catalog", background_load=False,
                    max_feedback_items=3, **values)


@pytest.fixture
def client(tmp_path: Path, feedback_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tmp_path, feedback_db=feedback_url))) as client:
        assert client.get("/ready").status_code == 503  # no models: feedback still works
        yield client


def decision(content_id: str, kind: str = "accepted", **extra: Any) -> dict[str, Any]:
    return {"topic_id": "t1", "content_id": content_id, "decision": kind, **extra}


def test_record_read_and_undo(client: TestClient, feedback_url: str) -> None:
    answer = client.post("/feedback", json={"who": "studio", "decisions": [
        decision("c1", "imported", rank=1, probability=0.83, channel_id="ch", versions={"ranker": "v1"}),
        decision("c2", "previewed", who="ana")]})
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["ids"]
    assert answer.json()["recorded"] == 2
    [third] = client.post("/feedback", json={"decisions": [decision("c1", "rejected")]}).json()["ids"]

    history = client.get("/feedback", params={"topic_id": "t1"}).json()["decisions"]
    assert [d["id"] for d in history] == [third, second, first]
    assert history[2]["who"] == "studio" and history[1]["who"] == "ana" and history[0]["who"] is None
    assert history[2]["versions"] == {"ranker": "v1"} and history[2]["rank"] == 1 and history[2]["source"] == "api"
    assert history[1]["versions"] == {}  # none given, none served (the models did not load)
    assert [d["id"] for d in client.get("/feedback", params={"limit": 1}).json()["decisions"]] == [third]
    assert client.get("/feedback", params={"topic_id": "other"}).json() == {"decisions": []}

    undone = client.post(f"/feedback/{third}/undo", json={"who": "ana"})
    assert undone.status_code == 200 and undone.json() == {"id": third, "undone": True}
    again = client.post(f"/feedback/{third}/undo")  # the review page's undo answers alike
    assert again.status_code == 404 and again.json()["detail"][0]["loc"] == ["body", "decision_id"]
    current = client.get("/feedback/current", params={"topic_id": "t1"}).json()["decisions"]
    assert [(d["id"], d["decision"]) for d in current] == [(second, "previewed"), (first, "imported")]
    with FeedbackStore.open(feedback_url) as store:  # what the answers said is what the database holds
        assert [d.id for d in store.history()] == [third, second, first]
        assert store.history()[0].undone_by == "ana"


def test_decisions_get_the_served_versions_when_they_give_none(client: TestClient) -> None:
    client.app.state.registry = SimpleNamespace(versions={"retriever": "r1", "ranker": None}, retrieval=object())
    [recorded] = client.post("/feedback", json={"decisions": [decision("c1")]}).json()["ids"]
    client.app.state.registry = None
    [stored] = client.get("/feedback").json()["decisions"]
    assert stored["id"] == recorded and stored["versions"] == {"retriever": "r1", "ranker": None}


@pytest.mark.parametrize(("body", "loc"), [
    ({"decisions": [decision("c1"), decision("c2", "liked")]}, ["body", "decisions", 1, "decision"]),
    ({"decisions": [decision("c1", rank=0)]}, ["body", "decisions", 0, "rank"]),
    ({"decisions": [decision("c1", probability=1.5)]}, ["body", "decisions", 0, "probability"]),
    ({"decisions": [decision("c1", topic_id="a\x00b")]}, ["body", "decisions", 0, "topic_id"]),
    ({"decisions": [decision("c1", who="\ud800")]}, ["body", "decisions", 0, "who"]),
    ({"decisions": [decision("c1", versions={"ranker": "v\x001"})]}, ["body", "decisions", 0, "versions", "ranker"]),
    ({"decisions": [decision("c1", colour="red")]}, ["body", "decisions", 0, "colour"]),
    ({"decisions": [decision(f"c{i}") for i in range(4)]}, ["body", "decisions"]),  # over max_feedback_items
    ({"decisions": []}, ["body", "decisions"]),
    ({"who": "x"}, ["body", "decisions"]),
    ({"decisions": [decision("c 1")]}, ["body", "decisions", 0, "content_id"]),  # ids hold no whitespace
    ({"decisions": [decision("c1", topic_id="t1 ")]}, ["body", "decisions", 0, "topic_id"]),
    ({"decisions": [decision("c1", channel_id="\u3000ch")]}, ["body", "decisions", 0, "channel_id"]),
    ({"decisions": [decision("\u00e9" * 300)]}, ["body", "decisions", 0, "content_id"]),  # 600 bytes in UTF-8
    ({"decisions": [decision("c1", who="\u00e9" * 300)]}, ["body", "decisions", 0, "who"]),
    ({"decisions": [decision("c1", versions={str(i): "v" for i in range(17)})]}, ["body", "decisions", 0, "versions"]),
    ({"decisions": [decision("c1", probability=float("nan"))]}, ["body", "decisions", 0, "probability"]),
])
def test_bad_input_is_a_422_naming_the_field(tmp_path: Path, body: dict[str, Any], loc: list[Any]) -> None:
    """Sent as JSON text with escapes, as a client may (a lone surrogate cannot be encoded otherwise)."""
    with TestClient(create_app(settings_for(tmp_path))) as client:
        answer = client.post("/feedback", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"][:len(loc)] == loc
        assert client.get("/feedback").json() == {"decisions": []}  # nothing of a refused call was kept
    assert (tmp_path / "artifacts" / "feedback.sqlite").is_file()  # the default database


def test_bad_query_and_path_values_are_422s(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path))) as client:
        for answer, where in ((client.get("/feedback", params={"limit": 0}), "limit"),
                              (client.get("/feedback", params={"topic_id": "a\x00"}), "topic_id"),
                              (client.get("/feedback/current", params={"limit": 0}), "limit"),
                              (client.get("/feedback/current", params={"limit": 10_001}), "limit"),
                              (client.post(f"/feedback/{2**63}/undo"), "decision_id"),
                              (client.post("/feedback/x/undo"), "decision_id")):
            assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == where


def test_the_routes_need_the_key_when_one_is_set(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path, api_key=KEY))) as client:
        body = {"decisions": [decision("c1")]}
        for refused in (client.post("/feedback", json=body), client.get("/feedback"),
                        client.get("/feedback/current"), client.post("/feedback/1/undo"),
                        client.post("/feedback", json=body, headers={"X-API-Key": "w" * 24})):
            assert refused.status_code == 401 and refused.json()["detail"][0]["loc"] == ["header", "authorization"]
        assert client.post("/feedback", json=body, headers={"X-API-Key": KEY}).status_code == 200
        assert len(client.get("/feedback", headers={"Authorization": f"Bearer {KEY}"}).json()["decisions"]) == 1


def test_an_unavailable_database_is_a_503_without_paths_and_is_retried(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "artifacts" / "feedback.sqlite"
    broken.parent.mkdir(parents=True)
    broken.write_text("not a database, " * 100)
    with TestClient(create_app(settings_for(tmp_path))) as client:
        assert client.get("/health").status_code == 200  # the app started all the same
        answer = client.post("/feedback", json={"decisions": [decision("c1")]})
        assert answer.status_code == 503 and "connecting failed" in answer.json()["detail"][0]["msg"]
        assert "not a database" not in answer.text and str(tmp_path) not in answer.text  # the driver's text: logged
        broken.unlink()  # repaired: a request after RETRY_SECONDS opens it
        monkeypatch.setattr(handlers, "RETRY_SECONDS", 0.0)
        assert client.post("/feedback", json={"decisions": [decision("c1")]}).status_code == 200

        with client.app.state.feedback.engine.begin() as connection:  # the database breaks under a running app
            connection.exec_driver_sql("DROP TABLE decisions")
        failed = client.post("/feedback", json={"decisions": [decision("c1")]})
        assert failed.status_code == 503 and "recording decisions failed" in failed.json()["detail"][0]["msg"]
        assert "no such table" not in failed.text and str(tmp_path) not in failed.text


def test_the_current_decisions_are_limited(client: TestClient) -> None:
    ids = client.post("/feedback", json={"decisions": [decision("c1"), decision("c2"), decision("c3")]}).json()["ids"]
    assert [d["id"] for d in client.get("/feedback/current", params={"limit": 2}).json()["decisions"]] == ids[:0:-1]
    assert len(client.get("/feedback/current").json()["decisions"]) == 3  # default 100


def test_an_unreachable_postgresql_is_a_503_naming_no_host_port_or_user(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import free_port

    port = free_port()
    url = f"postgresql://curator:pw@127.0.0.1:{port}/feedback"
    with caplog.at_level("WARNING"), TestClient(create_app(settings_for(tmp_path, feedback_db=url))) as client:
        answer = client.post("/feedback", json={"decisions": [decision("c1")]})
    assert answer.status_code == 503 and "connecting failed" in answer.json()["detail"][0]["msg"]
    assert not [word for word in ("127.0.0.1", str(port), "curator") if word in answer.text]
    assert str(port) in caplog.text  # the details are in the log


def test_values_the_database_refuses_are_a_422_without_the_drivers_text(client: TestClient,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_: object) -> list[int]:
        with failures("recording decisions", "db"):
            raise sa.exc.DataError("INSERT", {}, Exception('value too long; server "db.internal", user "ed"'))
        return []

    monkeypatch.setattr(client.app.state.feedback, "record", refuse)
    answer = client.post("/feedback", json={"decisions": [decision("c1")]})
    assert answer.status_code == 422 and "refused the values" in answer.json()["detail"][0]["msg"]
    assert "db.internal" not in answer.text


def test_a_store_being_opened_or_closed_answers_503_at_once(tmp_path: Path) -> None:
    """While one request opens the database (which may hang up to its connect timeout), others do not queue
    behind it; after shutdown nothing opens it again."""
    state = State({"settings": settings_for(tmp_path), "feedback": None, "feedback_error": "x"})
    assert handlers.OPENING.acquire(blocking=False)
    try:
        with pytest.raises(RequestError) as caught:
            handlers.store_of(state)
        assert caught.value.status == 503 and "being opened" in caught.value.message
    finally:
        handlers.OPENING.release()
    store = handlers.store_of(state)  # opened now
    assert isinstance(store, FeedbackStore) and state.feedback is store
    handlers.close_store(state)
    with pytest.raises(RequestError) as caught:
        handlers.store_of(state)
    assert caught.value.status == 503 and "shutting down" in caught.value.message and state.feedback is None
