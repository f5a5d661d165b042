"""Timing stages (tokenise, queue, encode, search, rerank, model, ...): pipelines take a `Timer`, the service
passes one that feeds Prometheus, evaluations pass one that adds the seconds up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

Timer = Callable[[str], AbstractContextManager[object]]


@contextlib.contextmanager
def timed(record: Callable[[float], object]) -> Iterator[None]:
    """Run the block, then `record` its wall-clock seconds (also when it raised)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        record(time.perf_counter() - started)


@dataclass
class StageTimes:
    """A Timer that adds up seconds per stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, stage: str) -> AbstractContextManager[None]:
        return timed(lambda seconds: self.seconds.__setitem__(stage, self.seconds.get(stage, 0.0) + seconds))


def no_timer(stage: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()
