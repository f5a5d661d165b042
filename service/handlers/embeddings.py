"""What /v1/embeddings and /embed do: validate the texts (or decode token ids), embed them in the retriever's
shared batches (`Registry.embed_texts`: served without the index), count their tokens. The routes only wire this up."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from edurank.service.errors import RequestError
from edurank.service.handlers.checks import check_text
from edurank.service.handlers.models import model_id
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


def decoded_ids(registry: Registry, field: str, value: list[int] | list[list[int]]) -> tuple[list[str], list[int]]:
    """Token-id inputs as the texts they decode to with the retriever's tokenizer (its special tokens
    dropped: embedding adds them back), and how many ids each had. Decoding rather than feeding the ids lets
    them share the text batches; ids past the token limit are cut first, as text is."""
    single = isinstance(value[0], int)
    rows: list[list[int]] = [value] if single else value  # type: ignore[list-item, assignment]
    limit, tokenizer = registry.settings.max_embed_inputs, registry.retriever.builder.tokenizer
    if len(rows) > limit:
        raise RequestError((field,), f"{len(rows)} token lists; the limit is {limit}")
    max_tokens, vocabulary = registry.retriever.max_tokens, len(tokenizer)
    texts = []
    for i, ids in enumerate(rows):
        where = (field,) if single else (field, i)
        if not ids:
            raise RequestError(where, "must hold at least one token id")
        for j, token in enumerate(ids):
            if not 0 <= token < vocabulary:
                raise RequestError((*where, j), f"token id {token} is not in the served retriever's vocabulary "
                                                f"(0 to {vocabulary - 1}); tiktoken ids (LangChain's default) are "
                                                "another vocabulary: send text")
        text = tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)
        if not text.strip():
            raise RequestError(where, "the token ids decode to no text (special tokens only)")
        texts.append(text)
    return texts, [min(len(ids), max_tokens) for ids in rows]


def token_counts(registry: Registry, texts: Sequence[str]) -> list[int]:
    """Tokens per text as the retriever's tokenizer counts them, before truncation; the text builder's copy
    of the tokenizer, never the one the batch worker is using (see `BiEncoder.builder`)."""
    tokenizer = registry.retriever.builder.tokenizer
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]]


def embeddings(registry: Registry, request: EmbeddingsRequest, timer: Timer = no_timer) -> EmbeddingsResponse:
    encoder = registry.retriever
    if request.dimensions is not None and request.dimensions != encoder.dimension:
        raise RequestError(("dimensions",), f"this model's vectors have {encoder.dimension} dimensions; "
                                            "it cannot shorten them")
    if isinstance(request.input, list) and request.input and not isinstance(request.input[0], str):
        texts, counts = decoded_ids(registry, "input", request.input)  # type: ignore[arg-type]
    else:
        texts = texts_of(registry, "input", request.input)  # type: ignore[arg-type]
        counts = [min(count, encoder.max_tokens) for count in token_counts(registry, texts)]
    tokens = sum(counts)
    vectors = registry.embed_texts(texts, timer)
    data = [Embedding(index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode()
                      if request.encoding_format == "base64" else v.tolist()) for i, v in enumerate(vectors)]
    model = model_id("retriever", registry.versions["retriever"])
    return EmbeddingsResponse(data=data, model=model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


def embed_tei(registry: Registry, request: EmbedRequest, timer: Timer = no_timer) -> list[list[float]]:
    texts = texts_of(registry, "inputs", request.inputs)
    if not request.normalize:
        raise RequestError(("normalize",), "the served vectors are L2-normalised; unnormalised ones are not kept")
    if not request.truncate:
        limit = registry.retriever.max_tokens
        for i, count in enumerate(token_counts(registry, texts)):
            if count > limit:
                field = ("inputs",) if isinstance(request.inputs, str) else ("inputs", i)
                raise RequestError(field, f"{count} tokens; the model reads {limit} (send truncate: true to cut)")
    return registry.embed_texts(texts, timer).tolist()
