"""The served process's connection limits, on a real uvicorn over loopback: sockets that never finish a
request's head are closed, complete requests are answered, idle keep-alive connections end."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from edurank.service.app import create_app
from edurank.service.server import redacted, server_config
from edurank.service.settings import Settings


@contextmanager
def running(settings: Settings) -> Iterator[int]:
    """The app of `settings` under uvicorn as `edurank serve` configures it, on a free loopback port."""
    server = uvicorn.Server(server_config(settings, create_app(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def settings_in(root: Path, **overrides: Any) -> Settings:
    return Settings(catalog=root / "missing", artifacts=root / "artifacts", background_load=False, port=0,
                    **overrides)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with running(settings_in(tmp_path_factory.mktemp("server"), header_timeout=0.5, keep_alive=3, body_timeout=1.0,
                             max_connections=50)) as port:
        yield port


def closed_after(connection: socket.socket, limit: float) -> float | None:
    """Seconds until the server closed the connection (reading EOF), or None if it stayed open `limit` s."""
    started = time.monotonic()
    connection.settimeout(limit)
    try:
        while connection.recv(4096):
            pass
    except TimeoutError:
        return None
    return time.monotonic() - started


def response(connection: socket.socket) -> bytes:
    """One whole HTTP response (its head and body may come in separate packets)."""
    connection.settimeout(60)
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += connection.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as idle:
        seconds = closed_after(idle, 5)
    assert seconds is not None and seconds < 2


def test_a_head_sent_slowly_is_closed_at_its_deadline(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        slow.sendall(b"X-Slow: 1\r\n")  # data keeps arriving, but the head never completes
        seconds = closed_after(slow, 5)
    assert seconds is not None and seconds < 2


def test_the_deadline_is_rearmed_for_each_request_on_a_kept_alive_connection(port: int) -> None:
    """After a response, the next head must also arrive within header_timeout (0.5 s), although keep-alive
    (3 s) would wait longer and uvicorn stops its keep-alive timer as soon as any byte arrives."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = response(connection)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}')
        connection.sendall(b"GET /health HTTP/1.1\r\n")  # the second request's head, never finished
        seconds = closed_after(connection, 5)
    assert seconds is not None and seconds < 1.5


def test_a_slow_body_is_answered_408_in_the_one_shape(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1000\r\n\r\n{")
        answer = response(connection)
    assert answer.startswith(b"HTTP/1.1 408") and b'"loc":["body"]' in answer


def test_a_request_with_two_framings_is_refused_and_its_connection_closed(port: int) -> None:
    """Content-Length and Transfer-Encoding together (a request-smuggling shape): 400, then the connection
    ends (RFC 9112 6.1), whatever the route."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = response(connection)
        assert answer.startswith(b"HTTP/1.1 400") and b"connection: close" in answer.lower()
        assert b'"loc":["header","transfer-encoding"]' in answer
        assert closed_after(connection, 3) is not None  # the smuggled second request is never answered


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    """By default a client on loopback cannot pick a new address per request to escape its rate limit; behind
    a trusted proxy each original client has its own."""
    def statuses(port: int, forwarded: list[str]) -> list[int]:
        return [requests.post(f"http://127.0.0.1:{port}/recommend", json={"topic_id": "t"}, timeout=30,
                              headers={"X-Forwarded-For": address}).status_code for address in forwarded]

    limited = {"rate_limit": 0.001, "rate_burst": 2}
    with running(settings_in(tmp_path, **limited)) as port:
        assert statuses(port, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [503, 503, 429]  # one peer, one bucket
    with running(settings_in(tmp_path, trusted_proxies=["127.0.0.1"], **limited)) as port:
        assert statuses(port, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) == [503, 503, 503]
        assert statuses(port, ["10.0.0.1", "10.0.0.1"]) == [503, 429]


def test_a_key_in_the_url_never_reaches_the_access_log(port: int) -> None:
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    try:
        requests.get(f"http://127.0.0.1:{port}/health", params={"api_key": "s3cret-key-0123456789", "x": "1"},
                     timeout=30)
        requests.get(f"http://127.0.0.1:{port}/health?Token=s3cret-token&X-API-Key=other-secret", timeout=30)
    finally:
        access.removeHandler(handler)
    assert len(seen) == 2 and "api_key=REDACTED&x=1" in seen[0], seen
    assert not any("s3cret" in line or "other-secret" in line for line in seen), seen
    assert redacted("/recommend?top=3") == "/recommend?top=3" and redacted("/a?access%5Ftoken=1") == \
        "/a?access%5Ftoken=REDACTED"
