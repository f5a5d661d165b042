"""Schemas of the embeddings area: OpenAI-compatible POST /v1/embeddings and text-embeddings-inference-
compatible POST /embed, both answered by the served retriever (its query vectors, L2-normalised)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool

from edurank.service.schemas.request import NOT_EMPTY, Count, Integer, Name, RequestModel, Text

Texts = Annotated[list[Text], Field(json_schema_extra=NOT_EMPTY)]
# ids below 0 or past the vocabulary are refused by the handler, naming the one (the document states the 0)
TokenId = Annotated[Integer, Field(json_schema_extra={"minimum": 0})]
TokenIds = Annotated[list[TokenId], Field(json_schema_extra=NOT_EMPTY)]


class EmbeddingsRequest(RequestModel):
    """OpenAI's embeddings request: texts, or token ids in the served retriever's vocabulary (one list, or a list
    per input), which are decoded with its tokenizer and embedded as that text. LangChain's OpenAIEmbeddings
    sends tiktoken ids by default, which are another vocabulary: give it check_embedding_ctx_length=False to
    send text."""

    input: Text | Texts | TokenIds | Annotated[list[TokenIds], Field(json_schema_extra=NOT_EMPTY)] = Field(
        examples=[["Adding fractions with unlike denominators"]],
        description="a text, a list of texts, or token ids of the served retriever's tokenizer (a list, or a list "
                    "of lists)")
    model: Name = Field("edurank", description="any name: the served retriever answers (its id is returned)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Count | None = Field(None, description="must equal the model's dimension if given")
    user: Name | None = None


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

    inputs: Text | Texts = Field(examples=["Adding fractions with unlike denominators"])
    normalize: StrictBool = Field(True, json_schema_extra={"enum": [True]},
                                  description="the served vectors are always L2-normalised; false is refused")
    truncate: StrictBool = Field(False, description="cut texts longer than the model's token limit (else 422)")
    prompt_name: None = Field(None, description="not supported: must be absent (or null)")
