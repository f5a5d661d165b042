"""Schemas of the models area: what is served, as OpenAI's GET /v1/models and text-embeddings-inference's
GET /info describe it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelCard(BaseModel):
    """One served model in OpenAI's shape: the retriever (/v1/embeddings) or the reranker (/v1/rerank)."""

    id: str = Field(examples=["edurank-retriever/model"], description="edurank-<kind>/<version>")
    object: Literal["model"] = "model"
    created: int = Field(description="when the model's files were written (Unix seconds)")
    owned_by: str = "edurank"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TeiInfo(BaseModel):
    """text-embeddings-inference's /info for the retriever that /tei and /tei/embed serve."""

    model_id: str
    model_sha: str | None = None
    model_dtype: str = Field("float32", description="of the vectors returned")
    model_type: dict[str, dict[str, str]] = Field(examples=[{"embedding": {"pooling": "mean"}}])
    max_concurrent_requests: int = Field(description="open connections before new requests get 503")
    max_input_length: int = Field(description="tokens per text the retriever reads: the model's own limit (256 "
                                              "for the bundled MiniLM) unless EDURANK_MAX_TOKENS lowers it")
    max_batch_tokens: int = Field(description="tokens per forward pass at most (texts per batch x token limit)")
    max_batch_requests: int | None = Field(description="texts per forward pass at most")
    max_client_batch_size: int = Field(description="most texts one call may send to both /tei/embed and "
                                                   "/tei/rerank (EDURANK_MAX_EMBED_INPUTS, "
                                                   "EDURANK_MAX_RERANK_CANDIDATES: the smaller)")
    auto_truncate: bool = Field(False, description="false: /tei/embed refuses longer texts unless `truncate`")
    tokenization_workers: int
    version: str = Field(description="edurank's version")
    sha: str | None = None
    docker_label: str | None = None
