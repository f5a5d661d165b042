"""Schemas of the recommend area: POST /recommend and POST /rerank."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from edurank.service.schemas.request import RequestModel, one_of


class TopicText(RequestModel):
    """A topic given by its text, for topics that are not in the loaded catalog."""

    title: StrictStr = Field(min_length=1, examples=["Adding fractions with unlike denominators"])
    description: StrictStr | None = None
    breadcrumbs: StrictStr | None = Field(None, examples=["Mathematics > Fractions"])
    language: StrictStr | None = Field(None, examples=["en"], description="must be one of the catalog's languages")


class RecommendRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=one_of({"topic_id": "string"}, {"topic": "object"}))

    topic_id: StrictStr | None = Field(None, min_length=1, description="a topic of the loaded catalog")
    topic: TopicText | None = None
    top_k: StrictInt | None = Field(None, ge=1, description="most items returned (default and limit: settings)")
    candidates: StrictInt | None = Field(None, ge=1, description="retrieved candidates to rerank (cross-encoder; a "
                                                          "ranker takes its own hybrid candidates)")
    threshold: StrictFloat | None = Field(None, ge=0.0, le=1.0, description="override the tuned threshold")
    margin: StrictFloat | None = Field(None, ge=0.0, lt=1.0, description="override the tuned margin: also keep items "
                                                                   "with probability >= best x (1 - margin); 0: off")
    explain: StrictBool = Field(False, description="name each item's top feature contributions (ranker only)")
    languages: list[StrictStr] | None = Field(None, description="only content in these languages")
    kinds: list[StrictStr] | None = Field(None, description="only content of these kinds")
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
    title: str
    kind: str | None
    language: str
    probability: float | None = Field(description="calibrated probability of relevance (null: not reranked)")
    retrieval_rank: int | None = Field(description="rank among the dense candidates (null: found by lexical "
                                                   "search only)")
    retrieval_score: float = Field(description="bi-encoder cosine")
    lexical_score: float | None = Field(None, description="character n-gram TF-IDF cosine (ranker only)")
    explanation: list[Contribution] | None = Field(None, description="with `explain`: the features that moved "
                                                                     "this item's score most")


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
    query: StrictStr = Field(min_length=1, examples=["Area of a triangle"])
    candidates: list[StrictStr] = Field(min_length=1, examples=[["Half of base times height.", "Photosynthesis"]])


class RerankScore(BaseModel):
    index: int = Field(description="position in the request's candidates")
    probability: float
    logit: float


class RerankResponse(BaseModel):
    scores: list[RerankScore] = Field(description="best first")
    versions: dict[str, str | None]


class TeiRerankRequest(RequestModel):
    """text-embeddings-inference's /rerank body (served at /tei/rerank; /rerank keeps edurank's contract)."""

    query: StrictStr = Field(min_length=1, examples=["Area of a triangle"])
    texts: list[StrictStr] = Field(min_length=1, examples=[["Half of base times height.", "Photosynthesis"]])
    raw_scores: StrictBool = Field(False, description="the cross-encoder's logits instead of calibrated probabilities")
    return_text: StrictBool = Field(False, description="echo each text beside its score")
    truncate: StrictBool = Field(True, description="accepted for compatibility: texts are always cut to the reranker's "
                                             "pair format (the token budgets it was trained with)")
    truncation_direction: Literal["Right", "right"] = Field("Right", description="only Right is supported")


class TeiRank(BaseModel):
    index: int = Field(description="position in the request's texts")
    score: float
    text: str | None = None
