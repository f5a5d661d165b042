"""`edurank serve`: uvicorn with the connection limits from settings.

uvicorn closes idle keep-alive connections, but not one that never finishes sending a request's headers (a
slow-loris client, or an idle socket opened and left): `HeadDeadlineProtocol` closes those after
`header_timeout`. Body timeouts and sizes are the app's (`edurank.service.middleware.Guard`). Proxy headers are
believed only from EDURANK_TRUSTED_PROXIES (uvicorn's default trusts 127.0.0.1, so any local client could claim
another address past the rate limit), and the access log never shows a key sent in a URL (`RedactKeys`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import unquote_plus

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from edurank.errors import InputError
from edurank.service.settings import Settings, load_settings

KEY_PARAM = re.compile(r"key|token|secret|passw|auth|sig", re.IGNORECASE)  # query parameters that may hold one


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


class RedactKeys(logging.Filter):
    """uvicorn's access log with the value of each key-like query parameter (`?api_key=...`, `?token=...`)
    replaced by REDACTED: a client that puts its key in a URL must not leave it in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 2 and isinstance(args[2], str):  # (client, method, target, ...)
            record.args = (*args[:2], redacted(args[2]), *args[3:])
        return True


def redacted(target: str) -> str:
    """A request target with the values of key-like query parameters replaced by REDACTED."""
    path, question, query = target.partition("?")
    if not question:
        return target
    parts = [part.partition("=") for part in query.split("&")]
    return path + "?" + "&".join(f"{name}=REDACTED" if equals and KEY_PARAM.search(unquote_plus(name)) else
                                 name + equals + value for name, equals, value in parts)


def server_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """uvicorn's config for `app` with the connection limits and trusted proxies of `settings`."""
    protocol = type("ServedProtocol", (HeadDeadlineProtocol,), {"header_timeout": settings.header_timeout})
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info", http=protocol,
                            timeout_keep_alive=settings.keep_alive, limit_concurrency=settings.max_connections,
                            proxy_headers=bool(settings.trusted_proxies),
                            forwarded_allow_ips=settings.trusted_proxies or None)
    access = logging.getLogger("uvicorn.access")  # configured by the Config just made: the filter goes on after
    if not any(isinstance(existing, RedactKeys) for existing in access.filters):
        access.addFilter(RedactKeys())
    return config


def serve_with(**overrides: object) -> None:
    """Serve with the environment's settings, `overrides` taking precedence."""
    settings = load_settings(**overrides)  # first: a bad setting is one line, before anything heavy loads
    from edurank.service.app import create_app

    if settings.replicas > 1 or settings.ray_address:
        serve_on_ray(settings)
        return
    uvicorn.Server(server_config(settings, create_app(settings))).run()


def serve_on_ray(settings: Settings) -> None:
    """Several replicas, or a Ray cluster: the app on Ray Serve (edurank.service.scale), an optional extra."""
    try:
        from edurank.service.scale import serve_replicas
    except ImportError as err:
        if (err.name or "").split(".")[0] != "ray":
            raise
        raise InputError(f"EDURANK_REPLICAS={settings.replicas} / EDURANK_RAY_ADDRESS need Ray Serve: pip install "
                         "'edurank[scale]'") from None
    serve_replicas(settings)
