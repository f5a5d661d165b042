"""POST /v1/embeddings (OpenAI-compatible) and POST /embed, also at /tei/embed and /tei (text-embeddings-
inference-compatible, beside /tei/rerank and /tei/info): validate, delegate to
edurank.service.handlers.embeddings, return."""

from __future__ import annotations

from fastapi import APIRouter

from edurank.service.deps import MetricsDep, RegistryDep
from edurank.service.handlers import embeddings as logic
from edurank.service.schemas.embeddings import EmbeddingsRequest, EmbeddingsResponse, EmbedRequest
from edurank.service.schemas.errors import error

router = APIRouter(tags=["embeddings"])
ERRORS = {422: error("invalid field (named in `loc`): empty, oversized or too many texts"),
          503: error("models not loaded yet, or the queue is full (see Retry-After)")}


@router.post("/v1/embeddings", response_model=EmbeddingsResponse, responses=ERRORS)  # type: ignore[arg-type]
def embeddings(request: EmbeddingsRequest, registry: RegistryDep, metrics: MetricsDep) -> EmbeddingsResponse:
    """The served retriever's L2-normalised vectors of the given texts, or of token ids in its vocabulary
    (decoded with its tokenizer), in OpenAI's format (the `openai` client's `embeddings.create` works against
    this service)."""
    return logic.embeddings(registry, request, metrics.stage)


@router.post("/tei", response_model=list[list[float]], responses=ERRORS)  # type: ignore[arg-type]
@router.post("/tei/embed", response_model=list[list[float]], responses=ERRORS)  # type: ignore[arg-type]
@router.post("/embed", response_model=list[list[float]], responses=ERRORS)  # type: ignore[arg-type]
def embed(request: EmbedRequest, registry: RegistryDep, metrics: MetricsDep) -> list[list[float]]:
    """The same vectors as text-embeddings-inference's /embed returns them: one list of floats per input. At
    /tei too, as TEI's `POST /`, where huggingface_hub's `InferenceClient(base_url=".../tei")` posts
    `feature_extraction`."""
    return logic.embed_tei(registry, request, metrics.stage)
