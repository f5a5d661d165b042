"""Access settings, limits and counting in front of the routes, on the app `create_app` builds. The models
never load here (the catalog is missing): what is tested stops before them, and /recommend's 503 says the
request got through the guard."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edurank.service.app import create_app
from edurank.service.middleware import REVIEW_COOKIE, REVIEW_SECONDS, RateLimiter, review_token, valid_token
from edurank.service.settings import Settings

KEY = "s3cret-key-0123456789"
BODY = {"topic": {"title": "Adding fractions"}}


def client_for(tmp_path: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(catalog=tmp_path / "missing", artifacts=tmp_path / "artifacts",
                                          background_load=False, **settings)))


def test_admin_routes_are_off_without_a_key_and_need_it_with_one(tmp_path: Path) -> None:
    with client_for(tmp_path) as client:
        off = client.post("/admin/reload")
        assert off.status_code == 403 and "EDURANK_API_KEY" in off.json()["detail"][0]["msg"]
    with client_for(tmp_path, api_key=KEY) as client:
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            refused = client.post("/admin/reload", headers=headers)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
            assert refused.json()["detail"][0]["loc"] == ["header", "authorization"] and KEY not in refused.text
        for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):  # past the guard: the reload
            refused = client.post("/admin/reload", headers=headers)  # runs, and fails on the missing catalog
            assert refused.status_code == 409 and "$EDURANK_CATALOG" in refused.json()["detail"][0]["msg"]
        assert client.post("/recommend", json=BODY).status_code == 503  # inference stays open by default


def test_the_guard_sees_paths_as_routing_does(tmp_path: Path) -> None:
    """Behind a proxy's root path the admin and ops routes keep their protection, and only /admin and what
    is below it counts as admin."""
    with TestClient(client_for(tmp_path, metrics_access="off").app, root_path="/api") as client:
        assert client.post("/api/admin/reload").status_code == 403
        assert client.get("/api/metrics").status_code == 404
        assert client.get("/api/health").status_code == 200
    with client_for(tmp_path) as client:
        assert client.post("/administrator").json()["detail"][0]["loc"] == ["path"]  # no such route, not 403
    # a root path strips only on a "/" boundary, as routing does: "/adm" is no prefix of "/admin/reload"
    with TestClient(client_for(tmp_path, api_key=KEY).app, root_path="/adm") as client:
        assert client.post("/admin/reload").status_code == 401  # routing runs the reload: the guard sees admin
    with TestClient(client_for(tmp_path, api_key=KEY).app, root_path="/re") as client:
        assert client.get("/review", headers={"Accept": "text/html"}, follow_redirects=False).status_code == 303


def test_inference_can_require_the_key_while_probes_stay_open(tmp_path: Path) -> None:
    with client_for(tmp_path, api_key=KEY, require_key=True) as client:
        assert client.post("/recommend", json=BODY).status_code == 401
        assert client.post("/recommend", json=BODY, headers={"X-API-Key": KEY}).status_code == 503
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 503
        # an empty X-API-Key header is no key: the Bearer one counts (a proxy may add the header empty)
        both = {"X-API-Key": "", "Authorization": f"Bearer {KEY}"}
        assert client.post("/recommend", json=BODY, headers=both).status_code == 503
        assert client.post("/recommend", json=BODY, headers={"X-API-Key": ""}).status_code == 401


def test_a_write_with_the_review_cookie_must_come_from_the_page_itself(tmp_path: Path) -> None:
    """SameSite=Strict sends the cookie from another origin of the same site (another port): the guard wants
    the request's own origin (Origin or Sec-Fetch-Site) for a change the cookie alone authorises."""
    cookie = {REVIEW_COOKIE: review_token(KEY.encode(), int(time.time()))}
    with client_for(tmp_path, api_key=KEY) as client:
        client.cookies.update(cookie)
        undo = "/review/decisions/1/undo"
        for headers in ({}, {"Origin": "http://testserver:8001"}, {"Origin": "null"},
                        {"Origin": "https://testserver"}, {"Sec-Fetch-Site": "same-site"}):
            refused = client.post(undo, content=b"", headers={"Content-Type": "text/plain", **headers})
            assert refused.status_code == 403 and refused.json()["detail"][0]["loc"] == ["header", "origin"]
        for headers in ({"Origin": "http://testserver"}, {"Origin": "HTTP://TestServer"},
                        {"Sec-Fetch-Site": "same-origin"}, {"X-API-Key": KEY}):
            assert client.post(undo, headers=headers).status_code == 404  # past the guard: no decision 1
        assert client.get("/review/decisions", params={"topic_id": "t"}).status_code == 503  # reads need no origin
        client.cookies.clear()
        assert client.post(undo, headers={"Origin": "http://testserver"}).status_code == 401


def test_a_review_cookie_expires_and_names_the_key(tmp_path: Path) -> None:
    key, now = KEY.encode(), time.time()
    fresh = review_token(key, int(now))
    assert valid_token(key, fresh, now) and valid_token(key, fresh, now + REVIEW_SECONDS - 1)
    assert not valid_token(key, fresh, now + REVIEW_SECONDS) and not valid_token(key, fresh, now - 3600)
    assert not valid_token(b"another key", fresh, now) and KEY not in fresh
    issued, mac = fresh.split(".")
    for forged in (f"{int(issued) + 1}.{mac}", mac, "", ".", "1e9.x", f"{'9' * 40}.{mac}", f"-1.{mac}"):
        assert not valid_token(key, forged, now), forged
    with client_for(tmp_path, api_key=KEY) as client:
        html = {"Accept": "text/html"}
        old = review_token(key, int(now) - REVIEW_SECONDS - 1)
        assert client.get("/review", headers=html, cookies={REVIEW_COOKIE: old}, follow_redirects=False) \
            .status_code == 303
        assert client.get("/review", headers=html, cookies={REVIEW_COOKIE: fresh}).status_code == 503  # let in
        login = client.post("/review/login", data={"key": KEY}, follow_redirects=False)
        assert login.status_code == 303 and f"Max-Age={REVIEW_SECONDS}" in login.headers["set-cookie"]


def test_the_login_redirect_drops_key_like_parameters_from_next(tmp_path: Path) -> None:
    """`next` lands in the access log: a key sent in the review page's URL does not travel into it."""
    with client_for(tmp_path, api_key=KEY) as client:
        sent = client.get(f"/review/topic/t1?key={KEY}&lang=fr&api_token=x&x-api-key=y",
                          headers={"Accept": "text/html"}, follow_redirects=False)
        assert sent.status_code == 303 and KEY not in sent.headers["location"]
        assert sent.headers["location"] == "/review/login?next=%2Freview%2Ftopic%2Ft1%3Flang%3Dfr"


def test_docs_and_metrics_can_be_turned_off_or_put_behind_the_key(tmp_path: Path) -> None:
    with client_for(tmp_path, docs_access="off", metrics_access="off") as client:
        for path in ("/docs", "/openapi.json", "/metrics", "/static/swagger-ui/swagger-ui.css"):
            assert client.get(path).status_code == 404, path
    with client_for(tmp_path, api_key=KEY, docs_access="key", metrics_access="key") as client:
        for path in ("/docs", "/openapi.json", "/metrics"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200, path


def test_a_client_over_its_rate_gets_429_with_retry_after_and_others_do_not(tmp_path: Path) -> None:
    with client_for(tmp_path, rate_limit=0.5, rate_burst=3) as client:
        statuses = [client.post("/recommend", json=BODY).status_code for _ in range(4)]
        assert statuses == [503, 503, 503, 429]
        limited = client.post("/recommend", json=BODY)
        assert int(limited.headers["Retry-After"]) >= 1 and limited.json()["detail"][0]["type"] == "rate_limited"
        assert client.get("/health").status_code == 200  # probes are never limited
        metrics = client.get("/metrics").text
        assert 'edurank_requests_total{route="/recommend",status="429"} 2.0' in metrics
    with TestClient(client.app, client=("10.0.0.2", 5000)) as other:
        assert other.post("/recommend", json=BODY).status_code == 503


def test_rate_limiter_refills_and_forgets_the_least_recently_seen() -> None:
    limiter = RateLimiter(rate=2.0, burst=2, max_clients=2)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert limiter.take("a", now=0.5) == 0.0  # one token back after half a second
    limiter.take("b", now=0.6)
    limiter.take("a", now=0.7)  # a is now the most recently seen
    limiter.take("c", now=0.8)  # the table is over its size: b, least recently seen, goes
    assert list(limiter.buckets) == ["a", "c"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with client_for(tmp_path, max_body_bytes=1_000) as client:
        declared = client.post("/recommend", content=b"x" * 2_000, headers={"content-type": "application/json"})
        assert declared.status_code == 413 and declared.json()["detail"][0]["loc"] == ["body"]

        def chunks() -> Any:  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b" " * 500

        streamed = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "1000 bytes" in streamed.json()["detail"][0]["msg"]
        assert 'route="/recommend",status="413"' in client.get("/metrics").text


async def stalled() -> dict[str, Any]:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def dripping() -> dict[str, Any]:
    """A byte every 0.1 s: each part arrives in time, the whole body never does."""
    await asyncio.sleep(0.1)
    return {"type": "http.request", "body": b" ", "more_body": True}


@pytest.mark.parametrize("receive", [stalled, dripping])
def test_a_body_that_stalls_or_drips_gets_408(tmp_path: Path, receive: Any) -> None:
    app = create_app(Settings(catalog=tmp_path / "missing", background_load=False, body_timeout=0.5))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/recommend", "raw_path": b"/recommend", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")], "client": ("1.2.3.4", 1),
             "server": ("test", 80), "scheme": "http", "root_path": "", "http_version": "1.1", "app": app}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))
    assert sent[0]["status"] == 408 and b"0.5 s" in sent[1]["body"]


def test_cors_is_off_unless_origins_are_configured(tmp_path: Path) -> None:
    preflight = {"Origin": "https://school.example", "Access-Control-Request-Method": "POST"}
    with client_for(tmp_path) as client:
        assert "access-control-allow-origin" not in client.options("/recommend", headers=preflight).headers
    with client_for(tmp_path, cors_origins=["https://school.example"]) as client:
        allowed = client.options("/recommend", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://school.example"
        other = client.options("/recommend", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_the_key_is_never_in_settings_reprs_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(api_key=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    with caplog.at_level("DEBUG"), client_for(tmp_path, api_key=KEY, require_key=True) as client:
        client.post("/recommend", json=BODY, headers={"X-API-Key": KEY})
        client.post("/recommend", json=BODY, headers={"X-API-Key": KEY[:-1]})  # a wrong key
        client.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})  # a reload that fails
    assert caplog.records and KEY not in caplog.text and KEY[:-1] not in caplog.text
