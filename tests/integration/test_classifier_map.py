"""Smoke test of the classifier trainer on a slice of ../shared/data/map: real responses to real questions,
one fold of members trained, its OOF figures and label issues, then classified as the service would."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from edurank.artifacts import read_manifest
from edurank.classifier.predictor import MisconceptionClassifier, Response
from edurank.training.classifier import train_classifier
from edurank.training.config import ClassifierConfig
from tests.conftest import report_figures, shared_dataset

pytestmark = pytest.mark.integration


def test_classifier_on_a_map_slice(tmp_path: Path) -> None:
    data = tmp_path / "responses.csv"
    pl.read_csv(shared_dataset("map") / "train.csv", infer_schema_length=0).sample(600, seed=0).write_csv(data)
    config = ClassifierConfig(folds=3, train_folds=1, max_length=96, freeze_layers=5, epochs=2,
                              learning_rate=2e-4, head_learning_rate=3e-3)
    path = train_classifier(data, tmp_path / "out", config)
    metrics = read_manifest(path)["metrics"]
    oof = pl.read_parquet(path / "oof.parquet")
    report_figures("classifier", metrics["oof"])
    assert oof["covered"].to_list() == (oof["fold"] == 0).to_list()  # only fold 0 was trained
    assert metrics["oof_rows"] == oof["covered"].sum() and 150 <= metrics["oof_rows"] <= 250
    # the masks alone leave a handful of labels per response: a learnt ranking beats chance among them
    assert metrics["oof"]["map3"] > 0.6
    classifier = MisconceptionClassifier.load(path)
    row = pl.read_csv(data, infer_schema_length=0).row(0, named=True)
    prediction = classifier.classify([Response(row["QuestionId"], None, row["MC_Answer"],
                                               row["StudentExplanation"])])[0]
    assert prediction.known_question and len(prediction.labels) == 3
