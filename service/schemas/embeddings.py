"""Schemas of the embeddings area: OpenAI-compatible POST /v1/embeddings and text-embeddings-inference-
compatible POST /embed, both answered by the served retriever (its query vectors, L2-normalised)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr

from edurank.service.schemas.request import RequestModel


class EmbeddingsRequest(RequestModel):
    """OpenAI's embeddings request: texts, or token ids in the served retriever's vocabulary (one list, or a list
    per input), which are decoded with its tokenizer and embedded as that text. LangChain's OpenAIEmbeddings
    sends tiktoken ids by default, which are another vocabulary: give it check_embedding_ctx_length=False to
    send text."""

    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]] = Field(
        examples=[["Adding fractions with unlike denominators"]],
        description="a text, a list of texts, or token ids of the served retriever's tokenizer (a list, or a list "
                    "of lists)")
    model: StrictStr = Field("edurank", description="any name: the served retriever answers (its id is returned)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, ge=1, description="must equal the model's dimension if given")
    user: StrictStr | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class EmbedRequest(RequestModel):
    """text-embeddings-inference's /embed request."""

    inputs: StrictStr | list[StrictStr] = Field(examples=["Adding fractions with unlike denominators"])
    normalize: StrictBool = Field(True, description="the served vectors are always L2-normalised; false is refused")
    truncate: StrictBool = Field(False, description="cut texts longer than the model's token limit (else 422)")
    prompt_name: StrictStr | None = Field(None, description="not supported: must be absent")
