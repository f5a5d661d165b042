"""Dynamic batching, as text-embeddings-inference does: requests that arrive together share one forward pass
per model.

Route handlers run on FastAPI's thread pool; each submits its items and waits. One worker thread per model
takes what is queued, in arrival order, up to `max_items` items and `max_tokens` tokens (as
text-embeddings-inference cuts its batches: eight 20,000-character essays are not eight short queries; tokens
are estimated from characters, `tokens_of`), waiting at most `max_wait_ms` after the first for more (0: take
what is there; while the model is busy, arrivals queue up and form the next batch anyway), runs the model
once and hands every caller its slice. A request that would push the queue past `max_queue` items is refused
at once (`Overloaded`, HTTP 503 with Retry-After) instead of hanging. A batch that fails is run again request
by request, so one bad input fails only its own request. Different models' batches may run at once (a lock
letting one run at a time was measured: 6-13% fewer /recommend requests/s at 16 clients, and a higher p99,
see bench/README.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client import Gauge, Histogram

from edurank.timing import Timer, no_timer

Item = TypeVar("Item")
CHARS_PER_TOKEN = 4  # about what English text averages with the WordPiece and BPE tokenizers served here


def tokens_of(*texts: str | None, limit: int | None = None) -> int:
    """About how many tokens the texts make together, special tokens included, at most `limit` (where the
    model cuts them): characters / 4, cheap enough for every queued item, unlike the tokenizer."""
    count = sum(len(text) for text in texts if text) // CHARS_PER_TOKEN + 2
    return min(count, limit) if limit else count


class Overloaded(Exception):
    """The model's queue is full; the caller should retry after `retry_after` seconds."""

    def __init__(self, model: str, queued: int, retry_after: int) -> None:
        super().__init__(f"the {model} queue is full ({queued} items waiting); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job(Generic[Item]):
    items: Sequence[Item]
    tokens: int = 0  # the items' estimated tokens (0: the batcher counts items only)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


@dataclass
class BatchMetrics:
    """Prometheus series of every batcher: queued items and items per forward pass, by model; and the stage
    timer a batched model's own stages (tokenise, model, ...) are observed with, once per batch."""

    depth: Gauge
    sizes: Histogram
    stage: Timer = no_timer


class Batcher(Generic[Item]):
    """Batches calls of `run` (items -> one result row per item, indexable by a slice) across threads; with
    `tokens` (an item's estimated tokens, `tokens_of`), a batch also holds at most `max_tokens` of them."""

    def __init__(self, name: str, run: Callable[[list[Item]], Any], max_items: int, max_wait_ms: float,
                 max_queue: int, metrics: BatchMetrics | None = None, tokens: Callable[[Item], int] | None = None,
                 max_tokens: int | None = None) -> None:
        self.name, self.run, self.max_items, self.max_wait = name, run, max_items, max_wait_ms / 1000
        self.max_queue, self.metrics = max_queue, metrics
        self.tokens, self.max_tokens = tokens, max_tokens if tokens is not None else None
        self.jobs: deque[Job[Item]] = deque()
        self.queued = 0  # items in self.jobs
        self.queued_tokens = 0  # their estimated tokens
        self.seconds_per_item = 0.01  # running estimate, for Retry-After
        self.changed = threading.Condition()
        self.closed = False
        self.worker = threading.Thread(target=self.serve, name=f"batcher-{name}", daemon=True)
        self.worker.start()

    def __call__(self, items: Sequence[Item]) -> Any:
        """The model's output for `items`, computed in a batch with whatever else is queued."""
        job: Job[Item] = Job(items, sum(map(self.tokens, items)) if self.tokens is not None else 0)
        with self.changed:
            alone = self.closed  # a request that took the registry before a swap, arriving after it
            if not alone:
                if self.queued and self.queued + len(items) > self.max_queue:
                    raise Overloaded(self.name, self.queued, max(1, round(self.queued * self.seconds_per_item)))
                self.jobs.append(job)
                self.queued += len(items)
                self.queued_tokens += job.tokens
                self.report()
                self.changed.notify_all()
        if alone:
            return self.run(list(items))
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def report(self) -> None:
        if self.metrics is not None:
            self.metrics.depth.labels(self.name).set(self.queued)

    def full(self, items: int, tokens: int) -> bool:
        """Whether a batch of this many items and tokens reaches a limit."""
        return items >= self.max_items or (self.max_tokens is not None and tokens >= self.max_tokens)

    def fits(self, items: int, tokens: int) -> bool:
        """Whether a batch of this many items and tokens is within the limits."""
        return items <= self.max_items and (self.max_tokens is None or tokens <= self.max_tokens)

    def take(self) -> list[Job[Item]]:
        """The next batch: the oldest job, then later ones while they fit in `max_items` and `max_tokens` (a
        job bigger than that runs alone), waiting up to `max_wait` after the first for the batch to fill; none
        once closed and drained."""
        with self.changed:
            while not self.jobs:
                if self.closed:
                    return []
                self.changed.wait()
            deadline = time.monotonic() + self.max_wait
            while not self.full(self.queued, self.queued_tokens) and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(left)
            batch = [self.jobs.popleft()]
            size, tokens = len(batch[0].items), batch[0].tokens
            while self.jobs and self.fits(size + len(self.jobs[0].items), tokens + self.jobs[0].tokens):
                size += len(self.jobs[0].items)
                tokens += self.jobs[0].tokens
                batch.append(self.jobs.popleft())
            self.queued -= size
            self.queued_tokens -= tokens
            self.report()
            return batch

    def close(self) -> None:
        """Stop the worker once the queue is empty (what is queued is still answered): the registry this
        batcher belongs to was swapped out."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def serve(self) -> None:
        while batch := self.take():
            items = [item for job in batch for item in job.items]
            started = time.perf_counter()
            try:
                self.answer(batch, items)
            finally:
                self.seconds_per_item = (time.perf_counter() - started) / max(len(items), 1)
                if self.metrics is not None:
                    self.metrics.sizes.labels(self.name).observe(len(items))
                for job in batch:
                    job.done.set()

    def answer(self, batch: list[Job[Item]], items: list[Item]) -> None:
        """Every job's slice of one forward pass; if the batch fails, each job alone (only a failing job gets
        the model's error)."""
        try:
            output = self.run(items)
        except BaseException as err:
            if len(batch) == 1:
                batch[0].error = err
                return
            for job in batch:
                self.answer([job], list(job.items))
            return
        start = 0
        for job in batch:
            job.result = output[start:start + len(job.items)]
            start += len(job.items)
