"""The FastAPI application factory and `edurank serve`.

Models load once, in a background thread started by the lifespan, so /health answers at once and /ready
turns 200 when the index side (catalog, retriever, index) serves; 503 with the reason while loading, while
waiting for a first index (`await_index` loads it when it is published) or when it failed, the essay scorer
and classifier serving meanwhile where they loaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException

import edurank
from edurank.service.batcher import Overloaded
from edurank.service.errors import (
    RequestError,
    http_error_handler,
    overloaded_handler,
    public_message,
    request_error_handler,
    validation_error_handler,
)
from edurank.service.handlers.feedback import close_store, open_store
from edurank.service.metrics import Metrics
from edurank.service.middleware import Guard, Limiter, Observe
from edurank.service.registry import Registry
from edurank.service.reload import await_index, published, watch_latest
from edurank.service.routes import (
    admin,
    catalog,
    classify,
    embeddings,
    essays,
    feedback,
    models,
    ops,
    recommend,
    review,
    studio,
)
from edurank.service.routes.docs import mount_docs
from edurank.service.routes.review import mount_review
from edurank.service.schemas.errors import ERROR_RESPONSES
from edurank.service.settings import Settings

log = logging.getLogger(__name__)


def load_registry(app: FastAPI, settings: Settings) -> None:
    with app.state.reload_lock:  # a reload asked for meanwhile waits its turn
        try:
            app.state.registry = Registry.load(settings, app.state.metrics.batching)
        except Exception as err:  # reported by /ready, without server paths; the process stays up to say why
            log.exception("loading the models failed")
            app.state.load_error = public_message(f"{type(err).__name__}: {err}", settings.named_paths())


def create_app(settings: Settings | None = None, limiter: Limiter | None = None) -> FastAPI:
    """The app; `limiter`: where the rate limit's tokens are kept when not in this process (Ray Serve replicas
    share one, edurank.service.scale)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        open_store(app.state, settings)  # apart from the models: feedback is taken while they load or failed
        stop, seen = threading.Event(), published(settings)  # before loading: what appears later is loaded then
        if settings.retry_seconds:
            threading.Thread(target=await_index, args=(app.state, settings, stop, seen), name="await-index",
                             daemon=True).start()
        if settings.background_load:
            threading.Thread(target=load_registry, args=(app, settings), name="load-models", daemon=True).start()
        else:
            load_registry(app, settings)
        if settings.watch_seconds:
            threading.Thread(target=watch_latest, args=(app.state, settings, stop), name="watch-latest",
                             daemon=True).start()
        yield
        stop.set()
        close_store(app.state)

    app = FastAPI(title="edurank", version=edurank.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None if settings.docs_access == "off" else "/openapi.json",
                  description="Retrieve-and-rank for education content: recommend catalog content for a "
                              "curriculum topic, rerank your own candidates, score essays on six traits, "
                              "classify students' misconceptions.")
    app.state.settings, app.state.metrics = settings, Metrics()
    app.state.registry, app.state.load_error, app.state.reload_lock = None, None, threading.Lock()
    app.add_exception_handler(RequestError, request_error_handler)
    app.add_exception_handler(Overloaded, overloaded_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.include_router(ops.router)
    app.include_router(admin.router, responses=ERROR_RESPONSES)
    for area in (recommend, studio, catalog, embeddings, essays, classify, models, review, feedback):
        app.include_router(area.router, responses=ERROR_RESPONSES)
    app.include_router(studio.stable)
    mount_review(app)  # the review page: HTML, its script and style sheet
    if settings.docs_access != "off":
        mount_docs(app)
    # outermost last: Observe sees every response, Guard's refusals and 500s included
    app.add_middleware(Guard, settings=settings, limiter=limiter)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    app.add_middleware(Observe, metrics=app.state.metrics)
    return app
