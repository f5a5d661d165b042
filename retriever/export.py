"""Exporting a bi-encoder: its trunk as an ONNX graph plus the source's sentence-transformers pooling, checked
by the cosine between both backends' vectors of the same catalog texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edurank.backends.base import warm_up
from edurank.backends.config import ExportConfig
from edurank.backends.export import Source, publish_export, refuse, side_by_side
from edurank.retriever.backends import OnnxEmbedder, export_embedder
from edurank.retriever.catalog import Catalog
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import content_parts, topic_parts


def check_slice(catalog: Catalog, encoder: BiEncoder, count: int) -> list[str]:
    """Up to `count` texts spread evenly over the catalog's content and topics (deterministic); only those
    are built (tokenised), not the whole catalog's."""
    parts = content_parts(catalog.content) + topic_parts(catalog.topics)
    step = max(len(parts) // count, 1)
    return encoder.builder.build(parts[::step][:count])


def agreement(source: BiEncoder, exported: BiEncoder, texts: list[str]) -> dict[str, Any]:
    """Cosine between the two backends' vectors of the same texts, and their throughputs side by side."""
    warm_up(source, exported)  # first-call allocations are not throughput
    reference, vectors, speed = side_by_side(lambda: source.encode(texts), lambda: exported.encode(texts),
                                             len(texts))
    cosine = np.einsum("ij,ij->i", reference, vectors)
    return {"texts": len(texts), "cosine_mean": round(float(cosine.mean()), 5),
            "cosine_min": round(float(cosine.min()), 5), **speed}


def export_retriever(model: str | Path | None, catalog: Catalog, out: Path, config: ExportConfig) -> Path:
    """Export, check on `catalog`'s texts, publish `<out>/<version>/`; returns that directory."""
    source = BiEncoder.load(model)

    def check(directory: Path) -> dict[str, Any]:
        exported = BiEncoder(OnnxEmbedder.load(directory, source.max_tokens, config.backend), directory, "")
        metrics = agreement(source, exported, check_slice(catalog, source, config.check_items))
        refuse(not metrics["cosine_mean"] >= config.min_cosine, f"--backend {config.backend}: mean cosine to torch "
               f"{metrics['cosine_mean']} is below --min-cosine {config.min_cosine}")
        return metrics

    def write(directory: Path) -> None:
        export_embedder(source.model, directory, config.backend)

    return publish_export(Source(BiEncoder.KIND, source.path, source.fingerprint, source.manifest), out, config,
                          catalog.data_hash, write, check, params={"max_tokens": source.max_tokens})
