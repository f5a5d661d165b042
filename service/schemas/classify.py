"""Schemas of the classification area: POST /classify."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from edurank.service.schemas.request import RequestModel, one_of

EXAMPLE = {"question_id": "31772", "answer": r"\( \frac{1}{3} \)",
           "explanation": "3 of the 9 triangles are not shaded, and 3/9 simplifies to 1/3."}


SINGLE = {"answer": "string", "explanation": "string"}  # what one response needs (and question_id or _text)


class StudentResponse(RequestModel):
    """One student's response: the question (by id, or by text when the classifier may not know it), the
    option chosen and the student's explanation."""

    id: StrictStr | None = Field(None, description="echoed back, to match results to your responses")
    question_id: StrictStr | StrictInt | None = Field(None, description="QuestionId as in the training data")
    question_text: StrictStr | None = Field(None, description="the question; needed when its id is unknown")
    answer: StrictStr | None = Field(None, description="the multiple-choice option the student chose")
    explanation: StrictStr | None = Field(None, description="the student's explanation of the choice")


class ClassifyRequest(StudentResponse):
    """One response as top-level fields, or a batch as `responses` (limit: EDURANK_MAX_RESPONSES)."""

    model_config = ConfigDict(json_schema_extra={**one_of(SINGLE, {"responses": "array"}), "examples": [
        EXAMPLE, {"responses": [{**EXAMPLE, "id": "s1"},
                                {"id": "s2", "question_text": "What is 0.2 x 0.3?", "answer": "0.6",
                                 "explanation": "2 times 3 is 6"}]}]})

    responses: list[StudentResponse] | None = Field(None, description="a batch of responses")


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
