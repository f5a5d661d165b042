"""Schemas of the recommend area: POST /recommend and POST /rerank."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, model_validator

from edurank.service.schemas.request import MAX_FILTERS, Count, Id, Name, Natural, RequestModel, Text, one_of


class TopicText(RequestModel):
    """A topic given by its text, for topics that are not in the loaded catalog."""

    title: Text = Field(examples=["Adding fractions with unlike denominators"])
    description: Text | None = None
    breadcrumbs: Text | None = Field(None, examples=["Mathematics > Fractions"])
    language: Id | None = Field(None, examples=["en"], description="must be one of the catalog's languages")


class RecommendRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=one_of({"topic_id": "string"}, {"topic": "object"}))

    topic_id: Id | None = Field(None, description="a topic of the loaded catalog")
    topic: TopicText | None = None
    top_k: Count | None = Field(None, description="most items returned (default and limit: settings)")
    candidates: Count | None = Field(None, description="retrieved candidates to rerank (cross-encoder; a ranker "
                                                       "takes its own hybrid candidates)")
    threshold: StrictFloat | None = Field(None, ge=0.0, le=1.0, description="override the tuned threshold")
    margin: StrictFloat | None = Field(None, ge=0.0, lt=1.0, description="override the tuned margin: also keep items "
                                                                   "with probability >= best x (1 - margin); 0: off")
    explain: StrictBool = Field(False, description="give each item up to three reasons in plain words and its raw "
                                                   "feature contributions (ranker only)")
    languages: list[Id] | None = Field(None, max_length=MAX_FILTERS, description="only content in these languages")
    kinds: list[Id] | None = Field(None, max_length=MAX_FILTERS, description="only content of these kinds")
    channels: list[Id] | None = Field(None, max_length=MAX_FILTERS, description="only content of these channels "
                                                                               "(items added with a channel_id)")
    exclude_channels: list[Id] | None = Field(None, max_length=MAX_FILTERS, description="no content of these channels")
    rerank: StrictBool = True

    @model_validator(mode="after")
    def one_topic(self) -> RecommendRequest:
        if (self.topic_id is None) == (self.topic is None):
            raise ValueError("give exactly one of topic_id and topic")
        return self


class Contribution(BaseModel):
    feature: str
    value: float | None = Field(description="the feature's value (null: missing)")
    contribution: float = Field(description="its additive share of the ranker's log-odds (SHAP)")


class RecommendedItem(BaseModel):
    id: str
    channel_id: str | None = Field(None, description="its channel (null: an item of the catalog files)")
    title: str = Field(description="its title in plain text (LaTeX rendered); a stored title that is no text, "
                                   "such as the LaTeX fragment `\\[`, is replaced by the first words of its "
                                   "description or text")
    snippet: str | None = Field(None, description="up to 160 characters of its description (else its text) in "
                                                  "plain text, after what the title says (null: nothing more)")
    kind: str | None
    language: str
    probability: float | None = Field(description="calibrated probability of relevance (null: not reranked)")
    retrieval_rank: int | None = Field(description="rank among the dense candidates (null: found by lexical "
                                                   "search only)")
    retrieval_score: float = Field(description="bi-encoder cosine")
    lexical_score: float | None = Field(None, description="character n-gram TF-IDF cosine (ranker only)")
    reasons: list[str] | None = Field(None, description="with `explain`: up to three reasons for its score in "
                                                        "plain words, the strongest first; one that lowered the "
                                                        "score starts with 'against: '")
    contributions: list[Contribution] | None = Field(None, description="with `explain`, for developers: every "
                                                                       "feature's SHAP contribution, largest first")


class Rule(BaseModel):
    threshold: float
    max_items: int
    min_items: int
    tuned: bool
    margin: float = 0.0


class RecommendResponse(BaseModel):
    topic_id: str | None
    items: list[RecommendedItem]
    reranked: bool
    rule: Rule | None
    versions: dict[str, str | None]


class RerankRequest(RequestModel):
    query: Text = Field(examples=["Area of a triangle"])
    candidates: list[Text] = Field(min_length=1, examples=[["Half of base times height.", "Photosynthesis"]])


class RerankScore(BaseModel):
    index: int = Field(description="position in the request's candidates")
    probability: float
    logit: float


class RerankResponse(BaseModel):
    scores: list[RerankScore] = Field(description="best first")
    versions: dict[str, str | None]


class TeiRerankRequest(RequestModel):
    """text-embeddings-inference's /rerank body (served at /tei/rerank; /rerank keeps edurank's contract)."""

    query: Text = Field(examples=["Area of a triangle"])
    texts: list[Text] = Field(min_length=1, examples=[["Half of base times height.", "Photosynthesis"]])
    raw_scores: StrictBool = Field(False, description="the cross-encoder's logits instead of calibrated probabilities")
    return_text: StrictBool = Field(False, description="echo each text beside its score")
    truncate: StrictBool = Field(True, description="accepted for compatibility: texts are always cut to the reranker's "
                                             "pair format (the token budgets it was trained with)")
    truncation_direction: Literal["Right", "right"] = Field("Right", description="only Right is supported")


class TeiRank(BaseModel):
    index: int = Field(description="position in the request's texts")
    score: float
    text: str | None = None


class RerankDocument(RequestModel):
    """A document as an object (Cohere's and Jina's other form of a text)."""

    text: Text


class CohereRerankRequest(RequestModel):
    """Cohere's rerank body (/v1/rerank, /v2/rerank), which Jina's and vLLM's share: what LangChain, LlamaIndex
    and the `cohere` SDK with a base URL send."""

    query: Text = Field(examples=["Area of a triangle"])
    documents: list[Text | RerankDocument] = Field(
        min_length=1, examples=[["Half of base times height.", {"text": "Photosynthesis"}]],
        description="texts, or objects with a `text`; up to EDURANK_MAX_RERANK_CANDIDATES (64) per call")
    model: Name | None = Field(None, description="any name: the served reranker answers (its id is returned)")
    top_n: Natural | None = Field(None, description="the best N results only (0 or absent: all)")
    return_documents: StrictBool = Field(True, description="echo each document as `document.text` (Jina's and "
                                                           "vLLM's default; Cohere's is false)")
    rank_fields: list[Literal["text"]] | None = Field(None, description="Cohere v1: only `text` is ranked")
    max_chunks_per_doc: Count | None = Field(None, description="Cohere v1, accepted: documents are not chunked "
                                                               "but cut to the reranker's pair format")
    max_tokens_per_doc: Count | None = Field(None, description="Cohere v2, accepted: documents are cut to the "
                                                               "reranker's pair format")


class RerankedDocument(BaseModel):
    text: str


class CohereRerankResult(BaseModel):
    index: int = Field(description="position in the request's documents")
    relevance_score: float = Field(description="calibrated probability of relevance (as /rerank's `probability`)")
    document: RerankedDocument | None = Field(None, description="with `return_documents`")


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int = Field(description="tokens of the (query, document) pairs the reranker read, within its "
                                          "pair format's budgets")


class CohereRerankResponse(BaseModel):
    id: str
    model: str
    results: list[CohereRerankResult] = Field(description="best first, cut to `top_n`")
    usage: RerankUsage
