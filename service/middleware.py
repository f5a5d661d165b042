"""The ASGI layers in front of the routes, outermost first:

- `Observe` counts and times every response by route template, 500s included: an exception no handler
  took becomes a 500 in the one error shape (logged here, never shown to the client).
- `Guard` applies the access settings before anything is read: API keys, per-client rate limits, the
  body-size limit (413 from Content-Length, or once a streamed body passes it) and the body timeout (408).
  The review pages (/review) need the key when one is set (or EDURANK_REQUIRE_KEY is on), from the header
  or, since a browser cannot send one when it navigates, from the cookie /review/login sets (valid for
  REVIEW_SECONDS); a page asked for without either redirects there. A write that the cookie alone
  authorises must come from the service's own pages (Origin or Sec-Fetch-Site says so): SameSite=Strict
  still sends the cookie from another origin of the same site, such as another port.
  The feedback routes (/feedback) need the key whenever one is set: they write, and name who decided.

Pure ASGI rather than `BaseHTTPMiddleware`: no extra task per request, and the body can be limited as it
streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections import OrderedDict
from typing import Protocol
from urllib.parse import quote, unquote_plus

from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edurank.service.errors import error_response
from edurank.service.metrics import Metrics
from edurank.service.server import KEY_PARAM
from edurank.service.settings import Settings

log = logging.getLogger(__name__)
OPS = ("/health", "/ready")  # probes: never behind a key or a rate limit
DOCS = ("/docs", "/openapi.json")
STATIC = "/static/"  # Swagger UI's own files: public, so the page loads in a browser whatever docs_access says
ADMIN = "/admin"
REVIEW, REVIEW_LOGIN = "/review", "/review/login"
FEEDBACK = "/feedback"
REVIEW_COOKIE = "edurank_review"
REVIEW_SECONDS = 12 * 3600  # how long a login lasts: the cookie's Max-Age, and the oldest one the guard accepts
CLOCK_SKEW = 60  # seconds a cookie may seem issued in the future (several workers' clocks)
SAFE_METHODS = ("GET", "HEAD")


class Observe:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, responded = time.perf_counter(), 500, False

        async def observed(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            log.exception("%s %s failed", scope["method"], route_name(scope))
            status = 500
            if not responded:  # answer in the one shape (once a response started, the connection just ends)
                await error_response(500, [], "internal error; the server log has the details",
                                     "internal_error")(scope, receive, send)
        finally:
            route = route_name(scope)
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def route_name(scope: Scope) -> str:
    """The route template a request matched (not the raw path: ids would explode the labels); for a request
    stopped before routing (a 413, a 429), its path when the API declares it; else `unmatched`."""
    route = scope.get("route")
    if route is not None:
        return route.path
    app = scope.get("app")
    if app is None:
        return "unmatched"
    declared = {*app.openapi()["paths"], app.openapi_url, "/docs"}  # the schema is built once, then cached
    path = get_route_path(scope)
    return path if path in declared else "unmatched"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes (EDURANK_MAX_BODY_BYTES)")


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the body took longer than {seconds:g} s to arrive")


class Guard:
    def __init__(self, app: ASGIApp, settings: Settings, limiter: Limiter | None = None) -> None:
        self.app, self.settings = app, settings
        self.key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self.buckets = limiter or RateLimiter(settings.rate_limit, settings.rate_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = await self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self.limited(receive), send)

    async def refusal(self, scope: Scope) -> ASGIApp | None:
        """The error response a request gets before its body is read, or None to let it through. The path is the
        one routing matches (without the `root_path` a proxy or a mount put in front, on a "/" boundary, as
        Starlette's router strips it): the guard must see what routing sees."""
        if header(scope, b"content-length") is not None and header(scope, b"transfer-encoding") is not None:
            # two framings: a proxy in front may have read the other one (request smuggling); RFC 9112 6.1
            return error_response(400, ["header", "transfer-encoding"], "send Content-Length or Transfer-Encoding, "
                                  "not both", "http_error", {"Connection": "close"})
        path = get_route_path(scope)
        if path in OPS or path.startswith(STATIC):
            return None
        if path == ADMIN or path.startswith(ADMIN + "/"):
            if self.key is None:
                return error_response(403, ["header", "authorization"], "the admin routes are off: set "
                                      "EDURANK_API_KEY to turn them on", "forbidden")
            need = "key"
        elif path in DOCS:
            need = self.settings.docs_access
        elif path == "/metrics":
            need = self.settings.metrics_access
        elif path == FEEDBACK or path.startswith(FEEDBACK + "/"):
            need = "key" if self.key is not None else "on"
        elif path == REVIEW or path.startswith(REVIEW + "/"):
            need = "review" if self.key is not None and path != REVIEW_LOGIN else "on"
        else:
            need = "key" if self.settings.require_key else "on"
        if need == "off":
            return error_response(404, ["path"], "Not Found", "http_error")
        # inference and admin; docs and metrics where they ask for the key (guessing it is limited too)
        limited = need == "key" or path not in (*DOCS, "/metrics")
        wait = await self.buckets.acquire(client_of(scope)) if limited else 0.0
        if wait > 0:
            return error_response(429, ["header"], f"over {self.settings.rate_limit:g} requests per second; "
                                  f"retry in {math.ceil(wait)} s", "rate_limited",
                                  {"Retry-After": str(math.ceil(wait))})
        if need in ("key", "review"):
            refused = self.unauthorised(scope, path, cookie=need == "review")
            if refused is not None:
                return refused
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.settings.max_body_bytes:
            return error_response(413, ["body"], BodyTooLarge(self.settings.max_body_bytes).detail, "body_too_large")
        return None

    def unauthorised(self, scope: Scope, path: str, cookie: bool) -> ASGIApp | None:
        """The refusal of a request that needs the key (or, with `cookie`, the review cookie), or None."""
        credential = self.credential(scope, cookie)
        if credential is None:
            browsing = scope["method"] in SAFE_METHODS and "text/html" in (header(scope, b"accept") or "")
            if cookie and browsing:  # a browser opening a review page; scripts and clients get the 401
                return login_redirect(scope, path)
            return error_response(401, ["header", "authorization"], "a valid API key is required: send "
                                  "`Authorization: Bearer KEY` or `X-API-Key: KEY`", "unauthorised",
                                  {"WWW-Authenticate": "Bearer"})
        if credential == "cookie" and scope["method"] not in SAFE_METHODS and not same_origin(scope):
            return error_response(403, ["header", "origin"], "a change made with the review page's cookie must "
                                  "come from the review page itself (its Origin); send the API key instead",
                                  "forbidden")
        return None

    def credential(self, scope: Scope, cookie: bool = False) -> str | None:
        """What authorises the request: "key" (the API key in a header) or, with `cookie`, "cookie" (a review
        cookie made from the key, issued less than REVIEW_SECONDS ago); None: nothing does."""
        if self.key is None:  # Settings refuse any route needing a key with none set; the admin routes 403 before
            return None
        sent = header(scope, b"x-api-key") or None  # an empty header is no key: a Bearer one may follow
        bearer = header(scope, b"authorization")
        if sent is None and bearer is not None and bearer[:7].lower() == "bearer ":
            sent = bearer[7:].strip()
        if sent is not None and hmac.compare_digest(sent.encode("latin-1"), self.key):
            return "key"
        token = cookie_parser(header(scope, b"cookie") or "").get(REVIEW_COOKIE) if cookie else None
        return "cookie" if token is not None and valid_token(self.key, token) else None

    def limited(self, receive: Receive) -> Receive:
        """`receive` with the body-size limit applied to what actually arrives (a chunked body has no
        Content-Length) and one deadline for the whole body, counted from the request's start (a client
        dripping a byte at a time does not reset it). Once the body is in, `receive` is passed through:
        later calls only wait for a disconnect while a response streams."""
        limit, timeout = self.settings.max_body_bytes, self.settings.body_timeout
        deadline, seen, complete = time.monotonic() + timeout, 0, False

        async def receive_limited() -> Message:
            nonlocal seen, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise BodyTimeout(timeout) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
                complete = not message.get("more_body", False)
            return message

        return receive_limited


def review_token(key: bytes, issued: int) -> str:
    """The review cookie's value: when it was issued (Unix seconds) and an HMAC of that by the key, never the key
    itself (a leaked cookie does not give the key away and expires, and a new key signs every browser out)."""
    return f"{issued}.{hmac.new(key, f'edurank review page {issued}'.encode(), hashlib.sha256).hexdigest()}"


def valid_token(key: bytes, token: str, now: float | None = None) -> bool:
    """Whether `token` is a review cookie made from `key` and issued less than REVIEW_SECONDS ago."""
    issued, _, _ = token.partition(".")
    if not issued.isascii() or not issued.isdigit() or len(issued) > 12:
        return False
    age = (time.time() if now is None else now) - int(issued)
    return -CLOCK_SKEW <= age < REVIEW_SECONDS and hmac.compare_digest(token.encode("latin-1"),
                                                                         review_token(key, int(issued)).encode())


def same_origin(scope: Scope) -> bool:
    """Whether the browser says the request comes from this service's own pages: `Sec-Fetch-Site: same-origin`,
    or an `Origin` that is the request's own scheme and Host (browsers send one with every POST; a page of
    another origin cannot forge either header)."""
    if header(scope, b"sec-fetch-site") == "same-origin":
        return True
    origin, host = header(scope, b"origin"), header(scope, b"host")
    return origin is not None and host is not None and origin.lower() == f"{scope['scheme']}://{host}".lower()


def login_redirect(scope: Scope, path: str) -> ASGIApp:
    """A review page asked for without the key: to the login form, which comes back here afterwards (without
    key-like query parameters: `next` lands in the access log, and the login form takes the key anyway)."""
    query = "&".join(part for part in scope.get("query_string", b"").decode("latin-1").split("&")
                     if part and not KEY_PARAM.search(unquote_plus(part.partition("=")[0])))
    back = quote(path + (f"?{query}" if query else ""), safe="")
    return RedirectResponse(f"{scope.get('root_path', '')}{REVIEW_LOGIN}?next={back}", status_code=303)


def header(scope: Scope, name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), None)


def client_of(scope: Scope) -> str:
    """Who a rate limit applies to: the peer's address, or the original client's when the peer is one of
    EDURANK_TRUSTED_PROXIES (uvicorn's proxy headers rewrite `client` only then; see `server_config`)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


class Limiter(Protocol):
    """Where the Guard takes a client's tokens: this process (`RateLimiter`), or one store several processes
    share (edurank.service.scale: one `RateLimiter` actor for every Ray Serve replica)."""

    async def acquire(self, client: str) -> float:
        """0 when the client may go ahead (a token is taken), else the seconds until it may."""
        ...


class RateLimiter:
    """A token bucket per client: `burst` requests at once, refilled at `rate` per second. At most
    `max_clients` buckets are kept, the least recently seen dropped first, so many addresses cannot
    exhaust memory (a dropped client starts again with a full bucket)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when), LRU first

    def take(self, client: str, now: float | None = None) -> float:
        """0 when the client may go ahead (a token is taken), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, when = self.buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        self.buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)  # now the most recent
        while len(self.buckets) > self.max_clients:  # the least recently seen go first: bounded memory
            self.buckets.popitem(last=False)
        return wait

    async def acquire(self, client: str) -> float:
        return self.take(client)
