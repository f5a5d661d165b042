"""Prometheus metrics, one registry per app: requests by route and status, request latency by route,
seconds per pipeline stage (queue, tokenise, encode, search, rerank), and each batched model's queue depth
and batch sizes, as text-embeddings-inference does."""

from __future__ import annotations

from contextlib import AbstractContextManager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edurank.service.batcher import BatchMetrics
from edurank.timing import timed

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("edurank_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("edurank_request_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram("edurank_stage_seconds", "seconds per pipeline stage", ["stage"],
                                buckets=LATENCY_BUCKETS, registry=self.registry)
        self.reloads = Counter("edurank_reloads", "hot swaps of the served versions, by outcome", ["outcome"],
                               registry=self.registry)
        self.items = Histogram("edurank_items_returned", "items returned per recommend call",
                               buckets=(0, 1, 2, 3, 5, 10, 20, 50), registry=self.registry)
        self.batching = BatchMetrics(
            Gauge("edurank_queue_depth", "items waiting for a model's next batch", ["model"], registry=self.registry),
            Histogram("edurank_batch_size", "items per forward pass", ["model"],
                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry), self.stage)

    def stage(self, name: str) -> AbstractContextManager[None]:
        """A pipeline Timer: observes the stage's seconds."""
        return timed(self.stages.labels(name).observe)
