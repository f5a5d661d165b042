"""Schemas of the classification area: POST /classify."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from edurank.service.schemas.request import MAX_ID_CHARS, NOT_BLANK, NOT_EMPTY, Id, Integer, RequestModel, Text

EXAMPLE = {"question_id": "31772", "answer": r"\( \frac{1}{3} \)",
           "explanation": "3 of the 9 triangles are not shaded, and 3/9 simplifies to 1/3."}


SINGLE_FIELDS = ("id", "question_id", "question_text", "answer", "explanation")
# one response, as JSON Schema: answer and explanation, and the question by id or by text
QUESTION: dict[str, Any] = {"anyOf": [
    {"required": ["question_id"], "properties": {"question_id": {"type": ["string", "integer"]}}},
    {"required": ["question_text"], "properties": {"question_text": {"type": "string"}}}]}
ONE_RESPONSE: dict[str, Any] = {"required": ["answer", "explanation"], **QUESTION,
                                "properties": {"answer": {"type": "string"}, "explanation": {"type": "string"}}}
# a batch: `responses`, and none of the single response's fields beside it
BATCH: dict[str, Any] = {"required": ["responses"], "properties": {
    "responses": {"type": "array"}, **{name: {"type": "null"} for name in SINGLE_FIELDS}}}
# a string id must hold more than whitespace (a blank one names no question)
QuestionId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=NOT_BLANK)] | Integer


def one_response(schema: dict[str, Any]) -> None:
    """A batch's response, as JSON Schema: answer and explanation given, and the question by id or text."""
    schema["allOf"] = [ONE_RESPONSE]


class StudentResponse(RequestModel):
    """One student's response: the question (by id, or by text when the classifier may not know it), the
    option chosen and the student's explanation."""

    model_config = ConfigDict(json_schema_extra=one_response)

    id: Id | None = Field(None, description="echoed back, to match results to your responses")
    question_id: QuestionId | None = Field(None, description="QuestionId as in the training data")
    question_text: Text | None = Field(None, description="the question; needed when its id is unknown")
    answer: Text | None = Field(None, description="the multiple-choice option the student chose")
    explanation: Text | None = Field(None, description="the student's explanation of the choice")


class ClassifyRequest(StudentResponse):
    """One response as top-level fields, or a batch as `responses` (limit: EDURANK_MAX_RESPONSES)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [ONE_RESPONSE, BATCH], "examples": [
        EXAMPLE, {"responses": [{**EXAMPLE, "id": "s1"},
                                {"id": "s2", "question_text": "What is 0.2 x 0.3?", "answer": "0.6",
                                 "explanation": "2 times 3 is 6"}]}]})

    responses: list[StudentResponse] | None = Field(None, json_schema_extra=NOT_EMPTY,
                                                    description="a batch of responses")


class LabelScore(BaseModel):
    label: str = Field(description="Category:Misconception, as in the training data")
    category: str
    misconception: str | None = Field(description="the named misconception; null for NA")
    probability: float


class Classification(BaseModel):
    id: str | None
    labels: list[LabelScore] = Field(description="the three most probable labels, best first")
    known_question: bool = Field(description="false: the question was not in training, so its options, correct "
                                             "answer and label priors were not used (expect lower accuracy)")
    question_id: str | None = Field(description="the training question matched (by id or exact text)")


class ClassifyResponse(BaseModel):
    results: list[Classification]
    model_version: str
