"""What /v1/models and /info say: the served models' ids and the retriever's limits, from the registry."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException

import edurank
from edurank.service.errors import safe_text
from edurank.service.registry import Registry
from edurank.service.schemas.models import ModelCard, TeiInfo


def model_id(kind: str, version: str | None) -> str:
    """How responses name a served model: edurank-<kind>/<version> (no version: a fresh, untrained one)."""
    return f"edurank-{kind}/{version}" if version else f"edurank-{kind}"


def served_models(registry: Registry) -> list[ModelCard]:
    """The retriever, and the reranker when one is loaded."""
    paths: dict[str, Path] = {"retriever": registry.retriever.path}
    if registry.reranker is not None:
        paths["reranker"] = registry.reranker.path
    return [ModelCard(id=model_id(kind, registry.versions[kind]), created=int(path.stat().st_mtime))
            for kind, path in paths.items()]


def served_model(registry: Registry, name: str) -> ModelCard:
    """The served model of this id; 404 (in the one error shape, `loc` path) naming those served."""
    models = served_models(registry)
    card = next((card for card in models if card.id == name), None)
    if card is None:
        raise HTTPException(404, f"no served model is called '{safe_text(name, 60)}'; served: "
                                 f"{', '.join(card.id for card in models)}")
    return card


def tei_info(registry: Registry) -> TeiInfo:
    settings, encoder = registry.settings, registry.retriever
    return TeiInfo(model_id=model_id("retriever", registry.versions["retriever"]),
                   model_type={"embedding": {"pooling": encoder.embedder.pooling.pooling_mode}},
                   max_concurrent_requests=settings.max_connections, max_input_length=encoder.max_tokens,
                   max_batch_tokens=settings.batch_max_items * encoder.max_tokens,
                   max_batch_requests=settings.batch_max_items,
                   max_client_batch_size=min(settings.max_embed_inputs, settings.max_rerank_candidates),
                   tokenization_workers=1, version=edurank.__version__)
