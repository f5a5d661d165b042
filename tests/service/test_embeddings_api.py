"""/v1/embeddings and /embed on a real server on loopback: the `openai` client, TEI-style calls, errors that
name the field, and 503 + Retry-After when the model's queue is full."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from edurank.retriever.model import BiEncoder
from edurank.service.app import create_app
from edurank.service.batcher import Overloaded
from edurank.service.settings import Settings
from tests.conftest import served, write_catalog

TEXTS = ["Adding fractions with unlike denominators", "La fotosíntesis de las plantas"]
OVER_LIMIT = "." * 300  # 302 tokens (each full stop is one) in 300 characters: over MiniLM's 256


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("embeddings")
    return Settings(artifacts=root / "artifacts", catalog=write_catalog(root / "catalog"), train_ranker=False,
                    background_load=False, max_embed_inputs=4, max_text_chars=400)


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with served(create_app(settings)) as url:
        yield url


def test_the_openai_client_gets_the_retrievers_vectors(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    response = client.embeddings.create(model="anything", input=TEXTS)  # the client asks for base64
    vectors = np.array([item.embedding for item in response.data])
    expected = BiEncoder.load(None).embed(TEXTS)
    assert [item.index for item in response.data] == [0, 1] and response.model.startswith("edurank-retriever/")
    assert np.abs(vectors - expected).max() < 1e-5 and response.usage.prompt_tokens > 10
    floats = client.embeddings.create(model="anything", input=TEXTS[0], encoding_format="float")
    assert np.abs(np.array(floats.data[0].embedding) - expected[0]).max() < 1e-5


def test_the_openai_client_sees_a_bad_request_as_an_error(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.embeddings.create(model="anything", input=TEXTS, dimensions=64)
    assert refused.value.body["detail"][0]["loc"] == ["body", "dimensions"]


def test_tei_embed_returns_one_list_per_input(base_url: str) -> None:
    vectors = httpx.post(f"{base_url}/embed", json={"inputs": TEXTS}).json()
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert abs(np.linalg.norm(vectors[1]) - 1) < 1e-4
    assert httpx.post(f"{base_url}/embed", json={"inputs": "one text"}).json()[0] == \
        httpx.post(f"{base_url}/embed", json={"inputs": ["one text"]}).json()[0]


@pytest.mark.parametrize(("path", "body", "loc"), [
    ("/v1/embeddings", {"input": []}, ["body", "input"]),
    ("/v1/embeddings", {"input": ["fine", " "]}, ["body", "input", 1]),
    ("/v1/embeddings", {"input": [[101, 2023], [101, 30522]]}, ["body", "input", 1, 1]),  # past the vocabulary
    ("/v1/embeddings", {"input": [[101, 2023], []]}, ["body", "input", 1]),
    ("/v1/embeddings", {"input": [101, 102]}, ["body", "input"]),  # special tokens only: no text
    ("/v1/embeddings", {"input": ["a"] * 5}, ["body", "input"]),
    ("/v1/embeddings", {"input": "x" * 401}, ["body", "input"]),
    ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}, ["body", "encoding_format"]),
    ("/embed", {"inputs": ["fine", OVER_LIMIT]}, ["body", "inputs", 1]),  # truncate false
    ("/embed", {"inputs": "a", "normalize": False}, ["body", "normalize"]),
])
def test_bad_embedding_requests_name_the_field(base_url: str, path: str, body: dict, loc: list) -> None:
    response = httpx.post(f"{base_url}{path}", json=body)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][:len(loc)] == loc


def test_long_texts_are_cut_when_truncate_is_asked(base_url: str) -> None:
    response = httpx.post(f"{base_url}/embed", json={"inputs": [OVER_LIMIT], "truncate": True})
    assert response.status_code == 200 and len(response.json()[0]) == 384


def test_batches_are_exported_to_metrics(base_url: str) -> None:
    httpx.post(f"{base_url}/embed", json={"inputs": TEXTS})
    text = httpx.get(f"{base_url}/metrics").text
    assert 'edurank_batch_size_count{model="retriever"}' in text and 'edurank_queue_depth{model="retriever"}' in text


def test_a_full_queue_answers_503_with_retry_after(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        def overloaded(texts: list[str]) -> None:
            raise Overloaded("retriever", 1024, 3)

        client.app.state.registry.embed = overloaded  # the shared batches /v1/embeddings uses
        response = client.post("/v1/embeddings", json={"input": "a"})
        assert response.status_code == 503 and response.headers["retry-after"] == "3"
        assert "queue is full" in response.json()["detail"][0]["msg"]


def test_concurrent_requests_get_their_own_vectors(base_url: str) -> None:
    """Many clients at once (batched together, the tokenizer shared with /recommend's text builder): every
    answer is 200 and equals what the text gets alone."""
    texts = [f"Lesson {i}: " + "fractions and decimals " * (i % 7 + 1) for i in range(24)]
    alone = {t: httpx.post(f"{base_url}/embed", json={"inputs": t}).json()[0] for t in texts}

    def ask(i: int) -> tuple[str, int, list[float] | None]:
        text = texts[i % len(texts)]
        if i % 3 == 2:  # /recommend runs the text builder on the same retriever meanwhile
            response = httpx.post(f"{base_url}/recommend", json={"topic": {"title": text}}, timeout=60)
            return text, response.status_code, None
        path, body = ("/embed", {"inputs": [text]}) if i % 3 else ("/v1/embeddings", {"input": [text],
                                                                                         "encoding_format": "float"})
        response = httpx.post(f"{base_url}{path}", json=body, timeout=60)
        vector = response.json()[0] if i % 3 else response.json()["data"][0]["embedding"]
        return text, response.status_code, vector

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, range(72)))
    assert all(status == 200 for _, status, _ in answers)
    for text, _, vector in answers:
        if vector is not None:
            assert np.abs(np.array(vector) - np.array(alone[text])).max() < 1e-4
