"""`edurank serve`: uvicorn with the connection limits from settings.

uvicorn closes idle keep-alive connections, but not one that never finishes sending a request's headers (a
slow-loris client, or an idle socket opened and left): `HeadDeadlineProtocol` closes those after
`header_timeout`. Body timeouts and sizes are the app's (`edurank.service.middleware.Guard`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from edurank.service.settings import Settings, load_settings


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline on each request's head: armed when the connection opens and
    after each response, cleared when a complete head has arrived."""

    header_timeout = 10.0  # set per server by `serve`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_deadline: asyncio.TimerHandle | None = None
        self.timed_cycle: Any = None
        self.arm_head_deadline()

    def arm_head_deadline(self) -> None:
        self.clear_head_deadline()
        self.head_deadline = self.loop.call_later(self.header_timeout, self.timeout_keep_alive_handler)

    def clear_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self.timed_cycle:  # a new request's head is complete
            self.timed_cycle = self.cycle
            self.clear_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is not self.timed_cycle:  # a pipelined request's head was already waiting: it started
            self.timed_cycle = self.cycle
        elif not self.transport.is_closing():
            self.arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.clear_head_deadline()
        super().connection_lost(exc)


def server_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """uvicorn's config for `app` with the connection limits of `settings`."""
    protocol = type("ServedProtocol", (HeadDeadlineProtocol,), {"header_timeout": settings.header_timeout})
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info", http=protocol,
                          timeout_keep_alive=settings.keep_alive, limit_concurrency=settings.max_connections)


def serve(host: str | None = None, port: int | None = None) -> None:
    serve_with(**{name: value for name, value in (("host", host), ("port", port)) if value})


def serve_with(**overrides: object) -> None:
    """Serve with the environment's settings, `overrides` taking precedence."""
    from edurank.service.app import create_app

    settings = load_settings(**overrides)
    uvicorn.Server(server_config(settings, create_app(settings))).run()
