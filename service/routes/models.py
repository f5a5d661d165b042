"""GET /v1/models and /v1/models/{id} (OpenAI-compatible), GET /tei/info and /info (text-embeddings-
inference-compatible): what is served, delegated to edurank.service.handlers.models."""

from __future__ import annotations

from fastapi import APIRouter

from edurank.service.deps import RegistryDep
from edurank.service.handlers import models as logic
from edurank.service.schemas.errors import error
from edurank.service.schemas.models import ModelCard, ModelList, TeiInfo

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
def models(registry: RegistryDep) -> ModelList:
    """The served models in OpenAI's list shape (the `openai` client's `models.list()`): the retriever, and
    the reranker when one is loaded. Requests may name any model: the served one answers."""
    return ModelList(data=logic.served_models(registry))


@router.get("/v1/models/{model:path}", response_model=ModelCard,
            responses={404: error("no served model has this id")})
def model(model: str, registry: RegistryDep) -> ModelCard:
    """One served model by its id (`models.retrieve`)."""
    return logic.served_model(registry, model)


@router.get("/tei/info", response_model=TeiInfo)
@router.get("/info", response_model=TeiInfo)
def info(registry: RegistryDep) -> TeiInfo:
    """text-embeddings-inference's /info for the retriever: `max_input_length` is its token limit, and
    `max_client_batch_size` the most texts a call may send to both /tei/embed and /tei/rerank (64 by default:
    a TEI client's default batch is 32)."""
    return logic.tei_info(registry)
