"""Schemas of the admin area: POST /admin/reload."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReloadResponse(BaseModel):
    previous: dict[str, str | None] | None = Field(description="versions served before (null: none had loaded)")
    serving: dict[str, str | None] = Field(description="versions served now")
    seconds: float = Field(description="time to load and check the new set")
    replicas: int | None = Field(None, description="replicas that swapped, all of them (`edurank serve --replicas`; "
                                                   "null: one process)")
