"""Schemas of the catalog area: edurank's own routes to add, update and delete content while the service runs
(POST /catalog/items, POST /catalog/items/delete) and to see the live catalog (GET /catalog)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictStr

from edurank.service.schemas.request import MAX_ID_CHARS, Id, Int64, RequestModel, Text

NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"  # an id is shown and logged as is


class ItemKey(RequestModel):
    id: StrictStr = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=NO_CONTROL)
    channel_id: StrictStr | None = Field(None, min_length=1, max_length=MAX_ID_CHARS, pattern=NO_CONTROL,
                                         description="items are keyed by (channel_id, id)")
    channel_version: Int64 | None = Field(None, description="an older version than the stored one is skipped")


class CatalogItem(ItemKey):
    title: Text = Field(examples=["Adding fractions"])
    description: Text | None = None
    text: StrictStr | None = None
    language: Id = Field(examples=["en"])
    kind: Id | None = Field(None, examples=["video"])


class UpsertRequest(RequestModel):
    items: list[CatalogItem] = Field(min_length=1)


class DeleteRequest(RequestModel):
    items: list[ItemKey] = Field(min_length=1)


class ChangeResponse(BaseModel):
    """What a change did, each item named as `channel_id/id` (or `id` alone without a channel)."""

    written: list[str] = Field(default_factory=list, description="added or updated, durable before this answer")
    deleted: list[str] = Field(default_factory=list)
    stale: list[str] = Field(default_factory=list, description="skipped: a newer channel_version is stored")
    missing: list[str] = Field(default_factory=list, description="not in the catalog")
    seq: int | None = Field(None, description="the journal record holding the change")


class CatalogState(BaseModel):
    items: int = Field(description="items served")
    live_rows: int = Field(description="rows changed since the published index version (compacted past "
                                        "EDURANK_COMPACT_ROWS)")
    journal_seq: int
    compact_rows: int
    compactions: list[dict[str, Any]]
    index_version: str | None
