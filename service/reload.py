"""Hot swaps: load the newest published versions beside the served ones and switch without a restart.

Requests hold the registry they started with, so those in flight finish on the old versions while new
ones get the new; the old registry's batchers drain and stop. A set that fails to load, fails its checks
(damaged files, an index built by another encoder, a catalog the index was not built from) or loses a
model the old set served is refused, and the old one keeps serving. Reloads never build an index: publish
one with `edurank index` first. `watch_latest` polls the artifacts' LATEST files and reloads when one
moves while the index side is served; `await_index` loads what is published while it is not (a first index,
say), as a start would. A reload whose new set has no index side is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from starlette.datastructures import State

from edurank.artifacts import Manifest
from edurank.errors import InputError
from edurank.service.errors import RequestError, public_message
from edurank.service.registry import OPTIONAL, RETRIEVAL, Registry
from edurank.service.settings import Settings

log = logging.getLogger(__name__)


def reload_registry(state: State, settings: Settings, wait: bool = False, starting: bool = False) -> dict[str, Any]:
    """Swap in the newest versions; RequestError 409 (with why) when refused, or when a reload is running
    and not `wait`. A reload only loads: it never builds an index nor trains a ranker, unless `starting` (the
    start-up finished late, see `await_index`: it loads as a start does)."""
    lock: threading.Lock = state.reload_lock
    if not lock.acquire(blocking=wait):
        raise RequestError((), "a reload is already running", 409)
    try:
        old: Registry | None = state.registry
        started = time.perf_counter()
        # the old live catalog finishes any compaction first: the new one replays the journal that leaves
        old_live = old.retrieval.live if old is not None and old.retrieval is not None else None
        compacting_into = old_live.stop_compacting() if old_live is not None else None

        def refuse(why: str) -> RequestError:
            if old_live is not None:
                old_live.out = compacting_into
            state.metrics.reloads.labels("refused").inc()
            return RequestError((), f"reload refused, the previous versions keep serving: {why}", 409)

        try:
            new = Registry.load(settings, state.metrics.batching, reloading=not starting)
        except Exception as err:  # any failure refuses the new set; the old one keeps serving
            log.exception("reload refused")
            raise refuse(public_message(f"{type(err).__name__}: {err}", settings.named_paths())) from err
        lost = {part: new.problems.get(part, "no longer served: its artifact is gone or does not fit the new set "
                                             "(the server log says why)")
                for part in (RETRIEVAL, *OPTIONAL) if old is not None and old.serves(part) and not new.serves(part)}
        if not new.serves(RETRIEVAL) and not starting:  # a set without the index side is no reload's result
            lost[RETRIEVAL] = new.problems[RETRIEVAL]
        if lost:
            new.close()
            raise refuse("; ".join(f"{part}: {why}" for part, why in lost.items()))
        state.registry, state.load_error = new, None
        if old is not None:
            old.close()
        state.metrics.reloads.labels("swapped").inc()
        log.info("reloaded in %.1f s: %s -> %s", time.perf_counter() - started, old and old.versions, new.versions)
        return {"previous": old.versions if old is not None else None, "serving": new.versions,
                "seconds": round(time.perf_counter() - started, 2)}
    finally:
        lock.release()


def reload_everywhere(state: State, settings: Settings) -> dict[str, Any]:
    """POST /admin/reload: this process's swap or, where the app runs as Ray Serve replicas (edurank.service.scale
    sets `state.reload_all`), every replica's."""
    everywhere = getattr(state, "reload_all", None)
    return everywhere() if everywhere is not None else reload_registry(state, settings)


def published(settings: Settings) -> tuple[tuple[str, str], ...]:
    """What each artifact kind's LATEST names now (a change means a newer version was published)."""
    roots = {"index": settings.index_root, "retriever": settings.artifacts / "retriever",
             **{kind: settings.artifacts / kind for kind in OPTIONAL}}
    found = []
    for kind, root in roots.items():
        latest = Path(root) / "LATEST"
        try:
            found.append((kind, latest.read_text().strip()))
        except OSError:
            continue
    return tuple(found)


def compacted_here(settings: Settings, kind: str, version: str) -> bool:
    """Whether `version` of the index is one the live catalog published (retriever/live.py)."""
    if kind != "index":
        return False
    try:
        return Manifest.read(settings.index_root / version).details.get("ran_on", {}).get("engine") == "live"
    except InputError:
        return False


def watch_latest(state: State, settings: Settings, stop: threading.Event) -> None:
    """Every `settings.watch_seconds`, reload when a LATEST file moved; a refused set is not retried until
    something moves again."""
    seen = published(settings)
    while not stop.wait(settings.watch_seconds):
        now = published(settings)
        registry: Registry | None = state.registry
        if now == seen or registry is None or not registry.serves(RETRIEVAL):
            continue  # unchanged, first load running, or no index side yet: await_index loads that one
        moved, seen = set(now) - set(seen), now
        served = registry.versions
        if all(served.get(kind) == version or compacted_here(settings, kind, version) for kind, version in moved):
            continue  # already served, or the live catalog's own compaction (it swaps that version in itself)
        try:
            reload_registry(state, settings, wait=True)  # after an admin reload that is running, if any
        except RequestError as err:
            log.error("watching LATEST: %s", err.message)


def await_index(state: State, settings: Settings, stop: threading.Event, seen: tuple[tuple[str, str], ...]) -> None:
    """While the index side is not served (the service started before its index job ended, say), look every
    `settings.retry_seconds` for newly published versions (`seen`: those published when loading began) and
    load as a start would when one appears: the service then serves without a restart."""
    while not stop.wait(settings.retry_seconds):
        registry: Registry | None = state.registry
        if registry.serves(RETRIEVAL) if registry is not None else state.load_error is None:
            continue  # served, or still loading
        now = published(settings)
        if now == seen:
            continue
        seen = now
        try:
            reload_registry(state, settings, wait=True, starting=True)
        except RequestError as err:
            log.error("loading what was published: %s", err.message)
