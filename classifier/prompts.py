"""The text a classifier reads for one response, built the same way at training and at serving.

A `QuestionBook` is fitted on the training rows: per question, its text, the answer options seen, which
option is correct (the one whose rows are mostly `True_*`: the category's prefix says whether the chosen
answer was right), the misconceptions annotators named and the labels seen. `build_prompt` puts the parts
that decide the label first (answer, its correctness, the explanation), so truncation drops the context
(options, known misconceptions) rather than what the student wrote. A question the book has never seen
still gets a prompt, without the per-question parts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from edurank.classifier.data import ANSWER, CATEGORY, LABEL, MISCONCEPTION, NO_MISCONCEPTION, QUESTION, QUESTION_TEXT


@dataclass
class QuestionFacts:
    text: str
    answers: list[str]  # options seen in training, most chosen first
    correct: str | None  # None when no option's rows are mostly True_*
    misconceptions: list[str] = field(default_factory=list)  # named ones, most frequent first
    labels: list[str] = field(default_factory=list)  # every label seen, most frequent first


@dataclass
class QuestionBook:
    questions: dict[str, QuestionFacts]

    @classmethod
    def fit(cls, frame: pl.DataFrame) -> QuestionBook:
        questions = {}
        for (question,), rows in frame.group_by(QUESTION, maintain_order=True):
            answers = Counter(rows[ANSWER].to_list())
            right = Counter(a for a, c in zip(rows[ANSWER], rows[CATEGORY], strict=True) if c.startswith("True_"))
            correct = [a for a, n in answers.items() if right[a] * 2 > n]
            named = Counter(m for m in rows[MISCONCEPTION].to_list() if m != NO_MISCONCEPTION)
            questions[str(question)] = QuestionFacts(
                text=str(rows[QUESTION_TEXT][0]), answers=[a for a, _ in answers.most_common()],
                correct=correct[0] if len(correct) == 1 else None,
                misconceptions=[m for m, _ in named.most_common()],
                labels=[label for label, _ in Counter(rows[LABEL].to_list()).most_common()])
        return cls(questions)

    def correctness(self, question: str, answer: str) -> bool | None:
        """Whether `answer` is the question's correct option; None for an unknown question or option."""
        facts = self.questions.get(question)
        if facts is None or facts.correct is None or answer not in facts.answers:
            return None
        return answer == facts.correct

    def allowed(self, question: str, answer: str, labels: Sequence[str]) -> np.ndarray:
        """Which of `labels` a response can carry: those seen for its question, with the True_/False_ prefix
        its answer's correctness implies. An unseen question allows every label."""
        facts = self.questions.get(question)
        seen = set(facts.labels) if facts is not None else None
        correct = self.correctness(question, answer)
        prefix = None if correct is None else ("True_" if correct else "False_")
        return np.array([(seen is None or label in seen) and (prefix is None or label.startswith(prefix))
                         for label in labels], dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        return {question: asdict(facts) for question, facts in self.questions.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QuestionBook:
        return cls({question: QuestionFacts(**facts) for question, facts in values.items()})


def build_prompt(book: QuestionBook, question: str, question_text: str, answer: str, explanation: str) -> str:
    facts = book.questions.get(question)
    verdict = {True: "correct", False: "incorrect", None: "of unknown correctness"}[book.correctness(question, answer)]
    parts = [f"Answer: {answer} ({verdict}).", f"Explanation: {explanation.strip()}", f"Question: {question_text}"]
    if facts is not None:
        parts.append("Options: " + " | ".join(facts.answers) + ".")
        parts.append("Known misconceptions: " + (", ".join(facts.misconceptions) or "none") + ".")
    return "\n".join(parts)
