"""The FastAPI application factory and `edurank serve`.

Models load once, in a background thread started by the lifespan, so /health answers at once and /ready
turns 200 when the registry is loaded (503 with the reason if loading failed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import edurank
from service.batching import Overloaded
from service.errors import RequestError, overloaded_handler, request_error_handler
from service.metrics import Metrics
from service.registry import Registry
from service.routes import classify, embeddings, essays, ops, recommend
from service.routes.docs import mount_docs
from service.settings import Settings

log = logging.getLogger(__name__)


def load_registry(app: FastAPI, settings: Settings) -> None:
    try:
        app.state.registry = Registry.load(settings, app.state.metrics.batching)
    except Exception as err:  # reported by /ready; the process stays up so operators can see why
        log.exception("loading the models failed")
        app.state.load_error = f"{type(err).__name__}: {err}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.background_load:
            threading.Thread(target=load_registry, args=(app, settings), name="load-models", daemon=True).start()
        else:
            load_registry(app, settings)
        yield

    app = FastAPI(title="edurank", version=edurank.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Retrieve-and-rank for education content: recommend catalog content for a "
                              "curriculum topic, rerank your own candidates, score essays on six traits, "
                              "classify students' misconceptions.")
    app.state.settings, app.state.metrics = settings, Metrics()
    app.state.registry, app.state.load_error = None, None
    app.add_exception_handler(RequestError, request_error_handler)
    app.add_exception_handler(Overloaded, overloaded_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.middleware("http")(observe_requests)
    app.include_router(ops.router)
    app.include_router(recommend.router)
    app.include_router(embeddings.router)
    app.include_router(essays.router)
    app.include_router(classify.router)
    mount_docs(app)
    return app


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 body, minus the echoed input (it may be a megabyte of essay), with each `loc` part and
    `msg` cut short and made encodable (an unknown field's name is the client's text)."""
    assert isinstance(error, RequestValidationError)
    detail = [{"loc": [part if isinstance(part, int) else safe_text(str(part)) for part in e["loc"]],
               "msg": safe_text(str(e["msg"])), "type": e["type"]} for e in error.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


def safe_text(text: str, limit: int = 200) -> str:
    """At most `limit` characters, lone surrogates escaped: safe to encode as JSON and to log."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."


async def observe_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Count requests and time them per route template (not per raw path: ids would explode the labels)."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    name = getattr(route, "path", "unmatched")
    metrics: Metrics = request.app.state.metrics
    metrics.requests.labels(name, str(response.status_code)).inc()
    metrics.latency.labels(name).observe(time.perf_counter() - started)
    return response


def serve(host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    settings = Settings()
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                log_level="info")
