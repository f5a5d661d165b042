"""Schemas of the operational routes: health and readiness."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    detail: str | None = None
    registry: dict[str, Any] | None = None
