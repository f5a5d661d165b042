"""Changing the served catalog while the service runs, for Studio's /embed-content and edurank's /catalog
routes alike: embed the new rows in the retriever's shared batches (outside any lock), then hand them to the
live catalog's one writer, which journals them durably before the route answers."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import polars as pl
from starlette.datastructures import State

from edurank.retriever.live import LiveCatalog, Outcome, prepared
from edurank.retriever.rows import KEY_SEPARATOR
from edurank.retriever.texts import content_parts
from edurank.service.errors import RequestError
from edurank.service.registry import Registry
from edurank.timing import Timer, no_timer

log = logging.getLogger(__name__)


def check_count(field: str, count: int, limit: int) -> None:
    if count > limit:
        raise RequestError((field,), f"{count} items; the limit is {limit} per call (EDURANK_MAX_UPSERT_ITEMS)")


def upsert(state: State, registry: Registry, rows: pl.DataFrame, timer: Timer = no_timer) -> Outcome:
    """Add or update `rows` (id, channel_id, channel_version, title, description, text, language, kind...):
    embedded here, written by the registry serving when the write happens (a reload may have swapped it)."""
    one_writer(state)
    recommender = registry.recommender
    if recommender.index.companion is not None and recommender.companion is None:
        raise RequestError((), "the index stores a companion encoder's vectors but that encoder is not loaded "
                               "(EDURANK_COMPANION), so live writes are off", 503)
    rows, texts, lexical = prepared(rows, recommender.encoder.builder)
    vectors = recommender.embed_texts(texts, timer)
    companion = recommender.companion
    companion_vectors = None
    if recommender.index.companion is not None and companion is not None:
        with timer("encode"):
            companion_vectors = companion.encode(companion.builder.build(content_parts(rows)))
    with timer("journal"), state.reload_lock, journalled():
        live = writer(state)
        return live.upsert(rows, vectors, lexical, companion_vectors, recommender.encoder.fingerprint)


def delete(state: State, keys: Sequence[tuple[str | None, str]], versions: Sequence[int | None],
           timer: Timer = no_timer) -> Outcome:
    one_writer(state)
    with timer("journal"), state.reload_lock, journalled():
        return writer(state).delete(keys, versions)


@contextmanager
def journalled() -> Iterator[None]:
    """A journal that cannot be written (a read-only artifacts folder, say): 503 with why, without its path;
    everything else serves on."""
    try:
        yield
    except OSError as err:
        log.error("live catalog: the journal cannot be written, live writes are off: %s", err)
        raise RequestError((), f"live writes are off: the live catalog's journal cannot be written "
                               f"({err.strerror or type(err).__name__}); make $EDURANK_LIVE_DIR (default: <index>-live "
                               "beside the index) writable, or publish the change with `edurank index --incremental`, "
                               "then POST /admin/reload", 503) from err


def one_writer(state: State) -> None:
    """409 where the app runs as several replicas: each would write its own journal into the one live folder,
    and the others would not see the change (edurank.service.scale)."""
    replicas = state.settings.replicas
    if replicas > 1:
        raise RequestError((), f"the live catalog takes writes only with one replica; this service runs {replicas} "
                               "(EDURANK_REPLICAS): publish the change with `edurank index --incremental`, then POST "
                               "/admin/reload", 409)


def writer(state: State) -> LiveCatalog:
    """The live catalog of the registry serving now (503 with why while its index side is off)."""
    registry: Registry | None = state.registry
    if registry is None:
        raise RequestError((), "not ready: the catalog is still loading", 503)
    return registry.live


def shown(key: str) -> str:
    """A key as clients read it: `channel_id/id`, or the id alone for an item without a channel."""
    channel, item = key.split(KEY_SEPARATOR, 1)
    return f"{channel}/{item}" if channel else item
