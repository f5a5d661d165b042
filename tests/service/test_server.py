"""The served process's connection limits, on a real uvicorn over loopback: sockets that never finish a
request's head are closed, complete requests are answered, idle keep-alive connections end."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from edurank.service.app import create_app
from edurank.service.server import server_config
from edurank.service.settings import Settings


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("server")
    settings = Settings(catalog=root / "missing", artifacts=root / "artifacts", background_load=False, port=0,
                        header_timeout=0.5, keep_alive=3, body_timeout=1.0, max_connections=50)
    server = uvicorn.Server(server_config(settings, create_app(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


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
