"""What every inference route shares: checking a text field against the size limit."""

from __future__ import annotations

from collections.abc import Sequence

from edurank.service.errors import RequestError


def check_text(field: Sequence[str | int], value: str | None, limit: int) -> None:
    if value is None:
        return
    if not value.strip():
        raise RequestError(field, "must not be empty or blank")
    if len(value) > limit:
        raise RequestError(field, f"is {len(value)} characters long; the limit is {limit}")
