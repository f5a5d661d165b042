"""The served classifier artifact: question book, label list, trunk and ensemble members in one directory.

    <version>/manifest.json         kind "classifier", params, OOF figures, timings
    <version>/book.json             per question: text, options, correct option, misconceptions, labels seen
    <version>/labels.json           the label vocabulary (head order) and the prompt's max length in tokens
    <version>/trunk/                the frozen encoder (HF dir + tokenizer) the members build on
    <version>/members/fold{f}-seed{s}/  each member's upper layers and head (safetensors + config)
    <version>/oof.parquet           out-of-fold probabilities of every training row
    <version>/label_issues.parquet  likely label errors found by confident learning on those probabilities

An export (`edurank export`, manifest param `backend`) keeps the book and labels, and holds the trunk and
every member as one ONNX graph (`model.onnx`, members stacked on its first axis) beside the tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from edurank.artifacts import Manifest, covered_oof, open_artifact
from edurank.backends.base import load_runner, open_served
from edurank.classifier.model import Ensemble, Members, OnnxEnsemble
from edurank.classifier.prompts import QuestionBook, build_prompt
from edurank.errors import InputError
from edurank.timing import Timer, no_timer

BOOK, LABELS, TRUNK_DIR, MEMBERS_DIR = "book.json", "labels.json", "trunk", "members"
OOF, ISSUES = "oof.parquet", "label_issues.parquet"


@dataclass
class Response:
    """One student response to classify; `question_text` is needed only for a question the book lacks."""

    question_id: str | None
    question_text: str | None
    answer: str
    explanation: str


@dataclass
class Prediction:
    labels: list[str]  # best first
    probabilities: list[float]
    question_id: str | None  # the training question matched; None: no per-question priors were used

    @property
    def known_question(self) -> bool:
        return self.question_id is not None


@dataclass
class MisconceptionClassifier:
    """The served classifier: question book, label vocabulary and the trunk + members ensemble."""

    KIND = "classifier"
    book: QuestionBook
    labels: list[str]
    ensemble: Members  # the torch `Ensemble`, or an export's `OnnxEnsemble`
    path: Path | None = None
    manifest: Manifest | None = None

    @classmethod
    def load(cls, path: str | Path, backend: str | None = None) -> MisconceptionClassifier:
        """A classifier version or export (or artifact root); `backend` names an export whose manifest is not
        written yet."""
        path, manifest, backend = open_served(path, cls.KIND, backend)
        book = QuestionBook.from_dict(json.loads((path / BOOK).read_text()))
        meta = json.loads((path / LABELS).read_text())
        ensemble: Members = load_runner(path, backend, partial(load_members, max_length=meta["max_length"]),
                                        partial(OnnxEnsemble.load, max_length=meta["max_length"]))
        return cls(book, meta["labels"], ensemble, path, manifest)

    @property
    def backend(self) -> str:
        return self.ensemble.backend

    def warmup(self) -> None:
        self.ensemble.warmup()

    @property
    def torch_ensemble(self) -> Ensemble:
        """The torch ensemble, for saving and exporting; an export has none."""
        if not isinstance(self.ensemble, Ensemble):
            raise InputError(f"classifier '{self.path}': an ONNX export cannot be re-saved or exported again; give "
                             "the model it was exported from (its manifest's base_model)")
        return self.ensemble

    def save(self, directory: Path) -> None:
        """The layout above, less the training side files (OOF, label issues) the trainer adds."""
        ensemble = self.torch_ensemble
        ensemble.encoder.save_pretrained(directory / TRUNK_DIR)
        ensemble.tokenizer.save_pretrained(directory / TRUNK_DIR)
        for member in ensemble.members:
            fold = "all" if member.config.fold is None else member.config.fold  # a student trained on every row
            member.save(directory / MEMBERS_DIR / f"fold{fold}-seed{member.config.seed}")
        self.save_book(directory)

    def save_book(self, directory: Path) -> None:
        """The question book and the label vocabulary, which an export keeps too."""
        (directory / BOOK).write_text(json.dumps(self.book.to_dict(), indent=2))
        (directory / LABELS).write_text(json.dumps({"labels": self.labels, "max_length": self.ensemble.max_length},
                                                   indent=2))

    @property
    def version(self) -> str | None:
        return self.manifest.version if self.manifest is not None else None

    def question_of(self, response: Response) -> tuple[str, str, bool]:
        """(book key, question text, known): by id, else by exact text; unknown questions keep their text."""
        if response.question_id is not None and response.question_id in self.book.questions:
            key = response.question_id
            return key, self.book.questions[key].text, True
        text = (response.question_text or "").strip()
        for key, facts in self.book.questions.items():
            if text and facts.text.strip() == text:
                return key, facts.text, True
        return response.question_id or "", text, False

    def classify(self, responses: Sequence[Response], top: int = 3, timer: Timer = no_timer,
                 batch_size: int = 64) -> list[Prediction]:
        probabilities, matched = self.probabilities(responses, timer, batch_size)
        order = np.argsort(-probabilities, axis=1)[:, :top]
        return [Prediction([self.labels[i] for i in row], [round(float(p[i]), 4) for i in row], question)
                for row, p, question in zip(order, probabilities, matched, strict=True)]

    def probabilities(self, responses: Sequence[Response], timer: Timer = no_timer, batch_size: int = 64) \
            -> tuple[np.ndarray, list[str | None]]:
        """(responses, labels) ensemble probabilities, and each response's matched training question (None:
        unknown)."""
        prompts, allowed, matched = [], [], []
        for response in responses:
            key, text, is_known = self.question_of(response)
            prompts.append(build_prompt(self.book, key, text, response.answer, response.explanation))
            allowed.append(self.book.allowed(key, response.answer, self.labels))
            matched.append(key if is_known else None)
        order = np.argsort([len(prompt) for prompt in prompts], kind="stable")  # batches of alike length: less padding
        result = np.empty((len(prompts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            with timer("tokenise"):
                features = self.ensemble.tokenize([prompts[row] for row in rows])
            with timer("model"):
                result[rows] = self.ensemble.probabilities(features, np.stack([allowed[row] for row in rows]))
        return result, matched


def load_members(path: Path, max_length: int) -> Ensemble:
    """The torch ensemble of a classifier version: its trunk and every member under it."""
    members = sorted((path / MEMBERS_DIR).glob("fold*"))
    if not members:
        raise InputError(f"{path}: no members under {MEMBERS_DIR}/")
    return Ensemble.load(path / TRUNK_DIR, members, max_length)


def classifier_artifact(path: str | Path) -> tuple[Path, Manifest]:
    """The version directory and manifest of a classifier artifact (a version dir or its root), kind checked."""
    return open_artifact(path, MisconceptionClassifier.KIND)


def oof_probabilities(path: Path) -> pl.DataFrame:
    """The artifact's stored out-of-fold probabilities (`row_id`, `probabilities`, ...) of the rows covered."""
    return covered_oof(path, OOF)
