"""`edurank export`: a trained (or any local) retriever as an ONNX Runtime artifact, checked against torch.

The export is a `retriever` artifact of its own (manifest param `backend`, base model = the source and its
fingerprint), so every command and the service load it wherever a retriever is accepted. Before publishing,
both backends embed a slice of the catalog's texts; the mean cosine between their vectors and the speed-up
go in the manifest's metrics, and an export below `--min-cosine` is refused (nothing is published).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import edurank
from edurank.artifacts import Manifest, fresh_dir, hash_json, model_ref, publish_artifact, staging_dir
from edurank.encoders import portable_name
from edurank.errors import InputError
from edurank.options import option
from inference.embedders import OnnxEmbedder, export_embedder
from inference.onnx import EXPORTED, ONNX_INT8, TORCH
from retriever.catalog import Catalog
from retriever.model import BiEncoder
from retriever.texts import content_parts, topic_parts

log = logging.getLogger(__name__)
EXPORTS = "exports"  # <artifacts>/exports: where the service looks for exports of the served retriever


@dataclass(frozen=True)
class ExportConfig:
    """`edurank export`'s options."""

    backend: str = option(ONNX_INT8, "onnx: fp32 ONNX Runtime, fused graph; onnx-int8: also int8 weights "
                                     "(dynamic quantisation, per channel)", choices=EXPORTED)
    check_texts: int = option(512, "catalog texts (content and topics) both backends embed to check agreement",
                              minimum=1)
    min_cosine: float = option(0.99, "refuse to publish when the mean cosine to torch's vectors is below this")


def check_slice(catalog: Catalog, encoder: BiEncoder, count: int) -> list[str]:
    """Up to `count` texts spread evenly over the catalog's content and topics (deterministic); only those
    are built (tokenised), not the whole catalog's."""
    parts = content_parts(catalog.content) + topic_parts(catalog.topics)
    step = max(len(parts) // count, 1)
    return encoder.builder.build(parts[::step][:count])


def agreement(source: BiEncoder, exported: BiEncoder, texts: list[str]) -> dict[str, Any]:
    """Cosine between the two backends' vectors of the same texts, and their throughputs side by side."""
    source.encode(texts[:8]), exported.encode(texts[:8])  # warm-up: first-call allocations are not throughput
    started = time.perf_counter()
    reference = source.encode(texts)
    torch_seconds = time.perf_counter() - started
    started = time.perf_counter()
    vectors = exported.encode(texts)
    seconds = time.perf_counter() - started
    cosine = np.einsum("ij,ij->i", reference, vectors)
    return {"texts": len(texts), "cosine_mean": round(float(cosine.mean()), 5),
            "cosine_min": round(float(cosine.min()), 5), "torch_items_per_s": round(len(texts) / torch_seconds, 1),
            "items_per_s": round(len(texts) / seconds, 1), "speedup": round(torch_seconds / seconds, 2)}


def export_retriever(model: str | Path | None, catalog: Catalog, out: Path, config: ExportConfig) -> Path:
    """Export, check, publish `<out>/<version>/`; returns that directory."""
    started = time.time()
    source = BiEncoder.load(model)
    if source.backend != TORCH:
        raise InputError(f"--model {source.path}: already an {source.backend} export; give the model it was "
                         f"exported from ({source.source})")
    run_hash = hash_json({"source": source.fingerprint, "config": asdict(config), "data": catalog.data_hash,
                          "edurank": edurank.__version__})
    with staging_dir(out, f"export-{run_hash[:12]}") as work:
        final = fresh_dir(work / "artifact")
        export_embedder(source.model, final, config.backend)
        exported_at = time.time()
        exported = BiEncoder(OnnxEmbedder.load(final, source.max_tokens, config.backend), final, "",
                             source.max_tokens)
        metrics = agreement(source, exported, check_slice(catalog, source, config.check_texts))
        log.info("export %s: %s", config.backend, metrics)
        if metrics["cosine_mean"] < config.min_cosine:
            raise InputError(f"--backend {config.backend}: mean cosine to torch {metrics['cosine_mean']} is below "
                             f"--min-cosine {config.min_cosine}; nothing was published")
        ref = replace(model_ref(source.path, source.fingerprint), path=portable_name(source.path))
        trained = source.manifest if source.manifest is not None and source.manifest.kind == BiEncoder.KIND else None
        # the source's data and split params: an export saw the topics its source trained on (`seen_topics`)
        return publish_artifact(
            final, out, run_hash, kind=BiEncoder.KIND, base_model=ref, data=trained.data if trained else {},
            params={**(trained.params if trained else {}), "max_tokens": source.max_tokens, **asdict(config)},
            metrics={**metrics, "check_data": catalog.data_hash},
            seconds={"export": exported_at - started, "check": time.time() - exported_at}, depends=[ref])


def find_export(root: Path, source_fingerprint: str, backend: str) -> Path | None:
    """The newest export under `root` of the model with that fingerprint, for that backend; None if none."""
    found = []
    for path in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        manifest = Manifest.read(path.parent)
        if manifest.kind == BiEncoder.KIND and manifest.params.get("backend") == backend \
                and manifest.base_model is not None and manifest.base_model.fingerprint == source_fingerprint:
            found.append(path.parent)
    return found[-1] if found else None  # versions sort by time of publishing
