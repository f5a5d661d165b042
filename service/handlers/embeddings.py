"""What /v1/embeddings and /embed do: validate the texts, embed them in the retriever's shared batches
(`Recommender.embed_texts`), count their tokens. The routes only wire this up."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from edurank.service.errors import RequestError
from edurank.service.handlers.checks import check_text
from edurank.service.registry import Registry
from edurank.service.schemas.embeddings import Embedding, EmbeddingsRequest, EmbeddingsResponse, EmbedRequest, Usage
from edurank.timing import Timer, no_timer


def texts_of(registry: Registry, field: str, value: str | list[str]) -> list[str]:
    """The request's texts, each checked (named by its index when a list was sent)."""
    texts = [value] if isinstance(value, str) else value
    limit = registry.settings.max_embed_inputs
    if not texts:
        raise RequestError((field,), "must hold at least one text")
    if len(texts) > limit:
        raise RequestError((field,), f"{len(texts)} texts; the limit is {limit}")
    for i, text in enumerate(texts):
        check_text((field,) if isinstance(value, str) else (field, i), text, registry.settings.max_text_chars)
    return texts


def token_counts(registry: Registry, texts: Sequence[str]) -> list[int]:
    """Tokens per text as the retriever's tokenizer counts them, before truncation; the text builder's copy
    of the tokenizer, never the one the batch worker is using (see `BiEncoder.builder`)."""
    tokenizer = registry.recommender.encoder.builder.tokenizer
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]]


def embeddings(registry: Registry, request: EmbeddingsRequest, timer: Timer = no_timer) -> EmbeddingsResponse:
    texts = texts_of(registry, "input", request.input)
    encoder = registry.recommender.encoder
    if request.dimensions is not None and request.dimensions != encoder.dimension:
        raise RequestError(("dimensions",), f"this model's vectors have {encoder.dimension} dimensions; "
                                            "it cannot shorten them")
    tokens = sum(min(count, encoder.max_tokens) for count in token_counts(registry, texts))
    vectors = registry.recommender.embed_texts(texts, timer)
    data = [Embedding(index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode()
                      if request.encoding_format == "base64" else v.tolist()) for i, v in enumerate(vectors)]
    model = f"edurank-retriever/{registry.versions['retriever']}"
    return EmbeddingsResponse(data=data, model=model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


def embed_tei(registry: Registry, request: EmbedRequest, timer: Timer = no_timer) -> list[list[float]]:
    texts = texts_of(registry, "inputs", request.inputs)
    if not request.normalize:
        raise RequestError(("normalize",), "the served vectors are L2-normalised; unnormalised ones are not kept")
    if request.prompt_name is not None:
        raise RequestError(("prompt_name",), "this model has no prompts")
    if not request.truncate:
        limit = registry.recommender.encoder.max_tokens
        for i, count in enumerate(token_counts(registry, texts)):
            if count > limit:
                field = ("inputs",) if isinstance(request.inputs, str) else ("inputs", i)
                raise RequestError(field, f"{count} tokens; the model reads {limit} (send truncate: true to cut)")
    return registry.recommender.embed_texts(texts, timer).tolist()
