"""edurank's own catalog routes: POST /catalog/items (add or update), POST /catalog/items/delete and GET /catalog
(the live catalog's state). Changes go through the same writer as Studio's /embed-content
(edurank.service.handlers.catalog): durable before the answer, seen by the next /recommend."""

from __future__ import annotations

import polars as pl
from fastapi import APIRouter, Request

from edurank.service.deps import MetricsDep, RegistryDep
from edurank.service.handlers import catalog as logic
from edurank.service.handlers.checks import check_text
from edurank.service.schemas.catalog import CatalogState, ChangeResponse, DeleteRequest, UpsertRequest
from edurank.service.schemas.errors import error

router = APIRouter(prefix="/catalog", tags=["catalog"])
ERRORS = {422: error("invalid field (named in `loc`): empty or oversized text, too many items"),
          503: error("models still loading")}


def response(outcome: logic.Outcome) -> ChangeResponse:
    return ChangeResponse(written=[logic.shown(k) for k in outcome.written],
                          deleted=[logic.shown(k) for k in outcome.deleted],
                          stale=[logic.shown(k) for k in outcome.stale],
                          missing=[logic.shown(k) for k in outcome.missing], seq=outcome.seq)


@router.post("/items", response_model=ChangeResponse, responses=ERRORS)  # type: ignore[arg-type]
def upsert(body: UpsertRequest, request: Request, registry: RegistryDep, metrics: MetricsDep) -> ChangeResponse:
    """Add or update items, keyed by (channel_id, id): their vectors, lexical rows and ranker features are
    served from the next /recommend on, without a rebuild; an older channel_version is skipped."""
    logic.check_count("items", len(body.items), registry.settings.max_upsert_items)
    for i, item in enumerate(body.items):
        for name in ("title", "description"):
            check_text(("items", i, name), getattr(item, name), registry.settings.max_text_chars)
    rows = pl.DataFrame([item.model_dump() for item in body.items])
    return response(logic.upsert(request.app.state, registry, rows, metrics.stage))


@router.post("/items/delete", response_model=ChangeResponse, responses=ERRORS)  # type: ignore[arg-type]
def delete(body: DeleteRequest, request: Request, registry: RegistryDep, metrics: MetricsDep) -> ChangeResponse:
    """Delete items by (channel_id, id), unless a newer channel_version of one is stored."""
    logic.check_count("items", len(body.items), registry.settings.max_upsert_items)
    return response(logic.delete(request.app.state, [(i.channel_id, i.id) for i in body.items],
                                 [i.channel_version for i in body.items], metrics.stage))


@router.get("/", response_model=CatalogState)
def state(registry: RegistryDep) -> CatalogState:
    """Items served, rows changed since the published index version, the compactions so far."""
    return CatalogState(**registry.live.describe(), index_version=registry.versions.get("index"))
