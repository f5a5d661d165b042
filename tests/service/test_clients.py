"""Each client's own shape, driven by the real client library against uvicorn on loopback: huggingface_hub's
InferenceClient (TEI's `POST /` and `GET /info` under /tei), the cohere SDK's rerank (Client: /v1/rerank,
ClientV2: /v2/rerank), Jina's and vLLM's rerank bodies, the openai SDK's models and token-id embeddings. And
one token limit: /embed, /v1/embeddings, the index job and the model directory itself give the same vector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cohere
import httpx
import huggingface_hub
import numpy as np
import openai
import polars as pl
import pytest
from fastapi.testclient import TestClient
from sentence_transformers import SentenceTransformer

from edurank.encoders import bundled_model_path
from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.retriever.catalog import load_catalog
from edurank.retriever.index_job import build_index, load_index
from edurank.retriever.model import BiEncoder
from edurank.service.app import create_app
from edurank.service.settings import Settings
from tests.conftest import CONTENT, item, served, write_catalog

QUERY = "area of a triangle"
DOCUMENTS = ["half of base times height", "photosynthesis in plants", "the cell membrane"]
LONG = ("Fractions name equal parts of a whole. To add two fractions with unlike denominators, first find a common "
        "denominator, usually the least common multiple of both denominators, then rewrite each fraction with it, "
        "add the numerators and simplify the result. For example, one half plus one third becomes three sixths plus "
        "two sixths, which is five sixths. Subtraction works the same way. To multiply fractions, multiply the "
        "numerators together and the denominators together, then simplify; to divide, multiply by the reciprocal "
        "of the divisor. Decimals are fractions whose denominators are powers of ten, so three tenths is written "
        "0.3 and twenty-five hundredths is 0.25. Percentages are hundredths: forty percent is forty hundredths, or "
        "two fifths. Comparing fractions is simpler with a common denominator, or by converting both to decimals. "
        "On a number line, every fraction has its own point between the whole numbers, and equivalent fractions "
        "such as two quarters and one half share the same point. Word problems about recipes and maps give "
        "practice in choosing the operation.")  # 250 tokens: within MiniLM's own 256, well past the old 128


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The app's defaults (bundled MiniLM, limits), a tiny catalog holding LONG as an item's whole text (its
    title repeats the text's start, so the encoder reads the text alone), and an untrained cross-encoder."""
    root = tmp_path_factory.mktemp("clients")
    reranker = Reranker.load(None, PairFormat(16, 32))
    reranker.save(root / "reranker")
    catalog = write_catalog(root / "catalog", content=[*CONTENT, item("long", "Fractions", LONG)])
    return Settings(artifacts=root / "artifacts", catalog=catalog, reranker=str(root / "reranker"),
                    train_ranker=False, background_load=False)


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with served(create_app(settings)) as url:
        yield url


def cosine(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def probabilities(base_url: str, texts: list[str]) -> list[tuple[int, float]]:
    """edurank's own /rerank answer: (index, calibrated probability), best first."""
    scores = httpx.post(f"{base_url}/rerank", json={"query": QUERY, "candidates": texts}).json()["scores"]
    return [(score["index"], score["probability"]) for score in scores]


def same_ranking(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """The same indices in the same order, with the same scores (to float rounding)."""
    return [i for i, _ in got] == [i for i, _ in expected] and \
        [score for _, score in got] == pytest.approx([score for _, score in expected])


# -- text-embeddings-inference ------------------------------------------------------------------------------

def test_huggingface_hubs_feature_extraction_posts_to_the_tei_root(base_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub refuses every request in offline mode, a local base URL included: allow this one
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    client = huggingface_hub.InferenceClient(base_url=f"{base_url}/tei")
    vector = client.feature_extraction(DOCUMENTS[0])  # POST /tei {"inputs": ...}
    expected = httpx.post(f"{base_url}/embed", json={"inputs": DOCUMENTS[0]}).json()
    assert vector.shape == (1, 384) and np.abs(vector - np.array(expected)).max() < 1e-6
    cut = client.feature_extraction("." * 300, truncate=True)  # 302 tokens: over the limit, cut when asked
    assert cut.shape == (1, 384)


def test_tei_info_states_the_token_limit_and_the_client_batch(base_url: str) -> None:
    info = httpx.get(f"{base_url}/tei/info").json()
    assert info == httpx.get(f"{base_url}/info").json()
    assert info["max_input_length"] == 256  # the bundled MiniLM's own max_seq_length
    assert info["max_client_batch_size"] == 64  # /tei/rerank's limit (EDURANK_MAX_RERANK_CANDIDATES): TEI's is 32
    assert info["model_type"] == {"embedding": {"pooling": "mean"}} and info["auto_truncate"] is False
    assert info["model_id"] == "edurank-retriever/model"


# -- rerank: Cohere, Jina, vLLM -----------------------------------------------------------------------------

def test_the_cohere_sdks_rerank_gets_the_calibrated_probabilities(base_url: str) -> None:
    expected = probabilities(base_url, DOCUMENTS)
    v1 = cohere.Client(api_key="unused", base_url=base_url).rerank(  # POST /v1/rerank
        model="edurank", query=QUERY, documents=[DOCUMENTS[0], {"text": DOCUMENTS[1]}, DOCUMENTS[2]], top_n=2,
        return_documents=True)
    assert same_ranking([(r.index, r.relevance_score) for r in v1.results], expected[:2])
    assert [r.document.text for r in v1.results] == [DOCUMENTS[r.index] for r in v1.results]
    v2 = cohere.ClientV2(api_key="unused", base_url=base_url).rerank(  # POST /v2/rerank
        model="edurank", query=QUERY, documents=DOCUMENTS, top_n=2)
    assert same_ranking([(r.index, r.relevance_score) for r in v2.results], expected[:2])
    everything = cohere.Client(api_key="unused", base_url=base_url).rerank(  # as LangChain's CohereRerank calls it
        query=QUERY, documents=DOCUMENTS, top_n=None, rank_fields=None, max_chunks_per_doc=None)
    assert same_ranking([(r.index, r.relevance_score) for r in everything.results], expected)


def test_jina_and_vllm_bodies_get_their_answer(base_url: str) -> None:
    body = {"model": "jina-reranker-v2-base-multilingual", "query": QUERY, "top_n": 3,
            "documents": [{"text": text} for text in DOCUMENTS]}
    answer = httpx.post(f"{base_url}/v1/rerank", json=body).json()
    assert answer["id"].startswith("rerank-") and answer["model"] == "edurank-reranker"
    assert answer["usage"]["total_tokens"] > 3 * 5
    assert [r["document"]["text"] for r in answer["results"]] == [DOCUMENTS[r["index"]] for r in answer["results"]]
    assert same_ranking([(r["index"], r["relevance_score"]) for r in answer["results"]],
                        probabilities(base_url, DOCUMENTS))
    bare = httpx.post(f"{base_url}/v1/rerank", json={**body, "return_documents": False, "top_n": 1}).json()
    assert len(bare["results"]) == 1 and "document" not in bare["results"][0]


@pytest.mark.parametrize(("body", "loc", "words"), [
    ({"query": QUERY, "documents": ["a"] * 65}, ["body", "documents"], "the limit is 64"),  # TEI clients batch 32
    ({"query": QUERY, "documents": ["a", " "]}, ["body", "documents", 1], "blank"),
    ({"query": QUERY, "documents": ["a"], "rank_fields": ["title"]}, ["body", "rank_fields", 0], "text"),
    ({"query": QUERY, "documents": [{"title": "a"}]}, ["body", "documents", 0], ""),
    ({"query": QUERY, "documents": []}, ["body", "documents"], ""),
])
def test_bad_rerank_bodies_name_the_field_and_the_limit(base_url: str, body: dict, loc: list, words: str) -> None:
    response = httpx.post(f"{base_url}/v1/rerank", json=body)
    detail = response.json()["detail"][0]
    assert response.status_code == 422 and detail["loc"][:len(loc)] == loc and words in detail["msg"]


# -- OpenAI -------------------------------------------------------------------------------------------------

def test_the_openai_sdk_lists_and_retrieves_the_served_models(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    ids = [model.id for model in client.models.list()]
    assert ids == ["edurank-retriever/model", "edurank-reranker"]
    embedded = client.embeddings.create(model="edurank", input="a text")
    assert embedded.model == ids[0]
    assert client.models.retrieve(ids[0]).id == ids[0]  # sent as /v1/models/edurank-retriever%2Fmodel
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4o")
    assert missing.value.body["detail"][0]["loc"] == ["path"]


def test_the_openai_sdk_embeds_token_ids_as_their_text(base_url: str) -> None:
    """Ids in the served retriever's vocabulary, with or without [CLS]/[SEP], one list or a list per input,
    give the vector of the text they spell."""
    tokenizer = BiEncoder.load(None).embedder.tokenizer
    ids = tokenizer(DOCUMENTS[0])["input_ids"]  # [101, ..., 102]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    expected = client.embeddings.create(model="edurank", input=DOCUMENTS, encoding_format="float")
    by_lists = client.embeddings.create(model="edurank", input=[ids, tokenizer(DOCUMENTS[1])["input_ids"][1:-1]],
                                        encoding_format="float")
    for got, want in zip(by_lists.data, expected.data[:2], strict=True):
        assert cosine(got.embedding, want.embedding) > 0.99999
    assert by_lists.usage.prompt_tokens == len(ids) + len(tokenizer(DOCUMENTS[1])["input_ids"]) - 2
    one = client.embeddings.create(model="edurank", input=ids)
    assert len(one.data) == 1 and cosine(one.data[0].embedding, expected.data[0].embedding) > 0.99999
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.embeddings.create(model="edurank", input=[ids, [101, 100_000]])  # a tiktoken id, say
    assert refused.value.body["detail"][0]["loc"] == ["body", "input", 1, 1]
    assert "vocabulary" in refused.value.body["detail"][0]["msg"]


# -- one token limit ----------------------------------------------------------------------------------------

def test_the_service_the_index_and_the_model_directory_give_one_vector(base_url: str, settings: Settings) -> None:
    """A 250-token text: cut at 128 tokens it was another vector (cosine 0.974); at the model's own 256 every
    path reads all of it."""
    tokens = len(BiEncoder.load(None).embedder.tokenizer(LONG)["input_ids"])
    assert 128 < tokens <= 256
    reference = SentenceTransformer(str(bundled_model_path()), device="cpu").encode([LONG], normalize_embeddings=True)
    embed = httpx.post(f"{base_url}/embed", json={"inputs": LONG}).json()  # truncate false: it fits
    openai_style = httpx.post(f"{base_url}/v1/embeddings", json={"input": LONG}).json()["data"][0]["embedding"]
    encoder = BiEncoder.load(None)
    index = load_index(settings.index_root, encoder)  # what the service built at start-up, as `edurank index`
    row = index.items.with_row_index().filter(pl.col("id") == "long")["index"].item()
    indexed = index.vectors_of(np.array([row]))
    assert index.manifest is not None and index.manifest.params["max_tokens"] == 256
    for vector in (embed, openai_style, indexed, encoder.encode([LONG])):
        assert cosine(vector, reference) > 0.9999
    assert cosine(BiEncoder.load(None, max_tokens=128).embed([LONG]), reference) < 0.99  # what the old cut gave


def test_a_setting_lowers_the_limit_and_the_index_follows(settings: Settings, tmp_path: Path) -> None:
    """EDURANK_MAX_TOKENS below the model's own: /tei/info says it, texts are cut there, and an index embedded
    at another limit is rebuilt; above the model's own limit, start-up is refused with the reason."""
    artifacts = tmp_path / "artifacts"
    built = build_index(BiEncoder.load(None), load_catalog(settings.catalog), artifacts / "index", progress=False)
    lowered = settings.model_copy(update={"artifacts": artifacts, "max_tokens": 128})
    with TestClient(create_app(lowered)) as client:
        assert client.get("/tei/info").json()["max_input_length"] == 128
        assert client.get("/ready").json()["registry"]["versions"]["index"] != built.name  # rebuilt at 128
        cut = client.post("/embed", json={"inputs": LONG, "truncate": True}).json()
        assert cosine(cut, BiEncoder.load(None, max_tokens=128).embed([LONG])) > 0.99999
        too_long = client.post("/embed", json={"inputs": LONG})
        assert too_long.status_code == 422 and "the model reads 128" in too_long.json()["detail"][0]["msg"]
    with TestClient(create_app(settings.model_copy(update={"artifacts": artifacts, "max_tokens": 512}))) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and "at most 256 tokens" in ready.json()["detail"]
