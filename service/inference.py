"""Pieces every inference route shares: waiting for an inference slot (timed as the `queue` stage) and
checking a text field against the size limit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from edurank.timing import Timer
from service.errors import RequestError
from service.registry import Registry


@contextlib.contextmanager
def inference_slot(registry: Registry, timer: Timer) -> Iterator[None]:
    """Wait (timed as the `queue` stage) for one of the registry's inference slots."""
    with timer("queue"):
        registry.gate.acquire()
    try:
        yield
    finally:
        registry.gate.release()


def check_text(field: Sequence[str | int], value: str | None, limit: int) -> None:
    if value is None:
        return
    if not value.strip():
        raise RequestError(field, "must not be empty or blank")
    if len(value) > limit:
        raise RequestError(field, f"is {len(value)} characters long; the limit is {limit}")
