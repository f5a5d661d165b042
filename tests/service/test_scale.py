"""`edurank serve --replicas 2` on a local Ray (2 CPUs): both replicas answer, a reload after a new index version
is published reaches both, the rate limit holds across them (X-Forwarded-For believed only from trusted proxies),
and the live catalog refuses writes."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edurank import SAMPLE_CATALOG
from edurank.cli.main import main
from edurank.retriever.catalog import load_catalog
from edurank.retriever.index_job import build_index
from edurank.retriever.model import BiEncoder
from edurank.service.settings import Settings
from tests.conftest import free_port

KEY = {"X-API-Key": "admin-key-0123456789"}
BURST = 10
REPLICA = "X-Edurank-Replica"  # the header naming the replica that answered


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """Two replicas over the bundled sample catalog; the index is built once, by `prepare`, before they start."""
    ray = pytest.importorskip("ray", reason="Ray Serve is not installed (pip install 'edurank[scale]')")
    scale = pytest.importorskip("edurank.service.scale", reason="Ray Serve is not installed")
    artifacts = tmp_path_factory.mktemp("scale") / "artifacts"
    settings = Settings(artifacts=artifacts, catalog=SAMPLE_CATALOG, train_ranker=False, replicas=2, port=free_port(),
                        api_key=KEY["X-API-Key"], rate_limit=0.1, rate_burst=BURST, max_tokens=64)  # as bundled_encoder
    ray.init(num_cpus=2, include_dashboard=False, namespace="edurank-tests", logging_level="WARNING")
    try:
        served = scale.start(settings)
        try:
            yield served.url, settings
        finally:
            scale.stop(served)
    finally:
        ray.serve.shutdown()
        ray.shutdown()


def client(address: str) -> httpx.Client:
    """A client calling from `address` (a loopback alias): each test is its own client for the rate limit."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=120)


def replicas_seen(http: httpx.Client, url: str, calls: int = 12) -> dict[str, httpx.Response]:
    """The last /ready answer of each replica that answered among `calls` (Serve routes each call on its own)."""
    answers = {}
    for _ in range(calls):
        response = http.get(f"{url}/ready")
        answers[response.headers[REPLICA]] = response
        if len(answers) == 2:
            break
    return answers


def test_both_replicas_answer(service: tuple[str, Settings]) -> None:
    url, settings = service
    with client("127.0.0.2") as http:
        answered: Counter[str] = Counter()
        for _ in range(BURST - 1):  # the write below is the burst's last
            response = http.post(f"{url}/recommend", json={"topic_id": "t_en_002", "top_k": 3})
            assert response.status_code == 200, response.text
            assert len(response.json()["items"]) == 3
            answered[response.headers[REPLICA]] += 1
        assert len(answered) == 2, answered
        ready = replicas_seen(http, url)
        assert all(answer.json()["ready"] for answer in ready.values())
        write = http.post(f"{url}/catalog/items", json={"items": [{"id": "new", "title": "New", "language": "en"}]})
        assert write.status_code == 409 and "one replica" in write.json()["detail"][0]["msg"]


def test_a_reload_reaches_every_replica(service: tuple[str, Settings], bundled_encoder: BiEncoder) -> None:
    url, settings = service
    with client("127.0.0.3") as http:
        before = {answer.json()["registry"]["versions"]["index"] for answer in replicas_seen(http, url).values()}
        time.sleep(1.1)  # versions are named to the second
        published = build_index(bundled_encoder, load_catalog(settings.catalog), settings.index_root).name
        assert len(before) == 1 and published not in before
        swapped = http.post(f"{url}/admin/reload", headers=KEY)
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["replicas"] == 2 and swapped.json()["serving"]["index"] == published
        after = replicas_seen(http, url)
        assert len(after) == 2 and {a.json()["registry"]["versions"]["index"] for a in after.values()} == {published}


def test_the_proxy_believes_no_forwarded_address_from_an_untrusted_peer(service: tuple[str, Settings]) -> None:
    """Serve's proxy runs its own uvicorn, which believes X-Forwarded-For from 127.0.0.1 unless told otherwise:
    with no EDURANK_TRUSTED_PROXIES a local client naming another address each call keeps its own bucket."""
    url, settings = service
    assert not settings.trusted_proxies
    with client("127.0.0.1") as http:
        answers = [http.get(f"{url}/v1/models", headers={"X-Forwarded-For": f"10.9.8.{i}"})
                   for i in range(BURST + 4)]
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses[429] >= 3, statuses


def test_the_rate_limit_holds_across_replicas(service: tuple[str, Settings]) -> None:
    """2 * burst calls from one client, spread over both replicas: burst of them pass (one process's answer),
    not 2 * burst."""
    url, _ = service
    with client("127.0.0.4") as http:
        started = time.monotonic()
        answers = [http.get(f"{url}/v1/models") for _ in range(2 * BURST)]
        refilled = int((time.monotonic() - started) * 0.1) + 1
    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) == {200, 429} and BURST <= statuses[200] <= BURST + refilled, statuses
    assert len({answer.headers[REPLICA] for answer in answers}) == 2
    assert int(answers[-1].headers["Retry-After"]) >= 1


class Remote:
    """A stand-in for an actor method: `.remote(...)` calls it at once (ray.get is the identity in these tests)."""

    def __init__(self, method: Any) -> None:
        self.remote = method


def test_the_reload_actor_waits_for_live_replicas_and_keeps_awaited_outcomes() -> None:
    scale = pytest.importorskip("edurank.service.scale", reason="Ray Serve is not installed")
    reloads = scale.Reloads()
    epoch, _ = reloads.current()
    awaited = reloads.ask()
    for _ in range(20):  # later reloads, each done: the awaited generation's outcomes stay
        reloads.done(reloads.ask())
    reloads.report([awaited], "a", {"swapped": True})
    assert reloads.outcomes_of(awaited) == {"a": {"swapped": True}} and len(reloads.outcomes) <= 17
    assert scale.Reloads().current()[0] != epoch  # a restarted actor is another epoch
    reloads.beat("a")
    reloads.beat("b")
    reloads.beats["b"] -= scale.ALIVE_SECONDS + 1  # b went silent: not waited for
    assert reloads.alive() == ["a"]


def test_a_failing_reload_is_the_replicas_refusal_and_its_follower_lives_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any exception of a replica's reload is reported as its refusal (without server paths); the thread goes
    on to the next generation, and follows a restarted actor (a new epoch) from its first generation."""
    scale = pytest.importorskip("edurank.service.scale", reason="Ray Serve is not installed")
    monkeypatch.setattr(scale.ray, "get", lambda ref: ref)
    monkeypatch.setattr(scale, "FOLLOW_SECONDS", 0.01)
    state = {"epoch": "one", "generation": 0}
    reports: list[tuple[list[int], dict[str, Any]]] = []
    failures = iter([RuntimeError("disk gone at /srv/artifacts"), None, None])

    def reload_registry(*_: Any, **__: Any) -> dict[str, Any]:
        failure = next(failures)
        if failure is not None:
            raise failure
        return {"previous": {}, "serving": {}, "seconds": 0.0}

    monkeypatch.setattr(scale, "reload_registry", reload_registry)
    actor = type("Reloads", (), {"current": Remote(lambda: (state["epoch"], state["generation"])),
                                 "report": Remote(lambda gens, _, outcome: reports.append((gens, outcome)))})()
    app = type("App", (), {"state": type("State", (), {"settings": Settings(artifacts=Path("/srv/artifacts"))})()})()
    stop = threading.Event()
    follower = threading.Thread(target=scale.follow_reloads, args=(app, actor, "r1", stop), daemon=True)
    follower.start()
    try:
        for expected in (1, 2, 3):
            if expected == 3:
                state.update(epoch="two", generation=0)  # the actor restarted
            state["generation"] += 1
            deadline = time.monotonic() + 10
            while len(reports) < expected:
                assert time.monotonic() < deadline and follower.is_alive(), reports
                time.sleep(0.01)
    finally:
        stop.set()
    assert reports[0][1]["swapped"] is False and "RuntimeError" in reports[0][1]["message"]
    assert "/srv/artifacts" not in reports[0][1]["message"]
    assert [gens for gens, _ in reports] == [[1], [2], [1]] and reports[2][1]["swapped"] is True


def test_replicas_without_ray_exit_2_saying_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "edurank.service.scale", raising=False)
    capsys.readouterr()  # what Ray streamed from the replicas of the tests before, not this command's
    assert main(["serve", "--replicas", "2"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pip install 'edurank[scale]'" in error
