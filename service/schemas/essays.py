"""Schemas of the essays area: POST /score-essay."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edurank.essays.data import TRAITS
from edurank.service.schemas.request import NOT_EMPTY, Id, RequestModel, Text, one_of

TRAIT_LIST = ", ".join(TRAITS)


class Essay(RequestModel):
    id: Id | None = Field(None, description="echoed back, to match results to your essays")
    text: Text = Field(description="the essay (limit: EDURANK_MAX_ESSAY_CHARS characters)")


class ScoreEssayRequest(RequestModel):
    """One essay as `text`, or a batch as `essays` (limit: EDURANK_MAX_ESSAYS); exactly one of the two."""

    model_config = ConfigDict(json_schema_extra={**one_of({"text": "string"}, {"essays": "array"}), "examples": [
        {"text": "I think students would benefit from learning at home because they can work at their own pace."},
        {"essays": [{"id": "a1", "text": "First essay ..."}, {"id": "a2", "text": "Second essay ..."}]}]})

    text: Text | None = Field(None, description="a single essay")
    essays: list[Essay] | None = Field(None, json_schema_extra=NOT_EMPTY, description="a batch of essays")

    @model_validator(mode="after")
    def one_form(self) -> ScoreEssayRequest:
        if (self.text is None) == (self.essays is None):
            raise ValueError("give exactly one of text and essays")
        return self


class EssayScores(BaseModel):
    id: str | None
    scores: dict[str, float] = Field(description=f"predicted score per trait ({TRAIT_LIST}), within 1.0-5.0")
    rounded: dict[str, float] = Field(description="the same, rounded to the nearest 0.5 as raters score")


class ScoreEssayResponse(BaseModel):
    results: list[EssayScores]
    traits: list[str] = Field(default=list(TRAITS))
    model_version: str
