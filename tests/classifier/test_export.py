"""`edurank export` of the classifier: trunk and members as one ONNX graph, MAP@3 checked against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edurank.artifacts import LATEST, Manifest
from edurank.backends.config import ExportConfig
from edurank.classifier.export import export_classifier
from edurank.classifier.predictor import MisconceptionClassifier, Response
from edurank.cli.main import main
from edurank.errors import InputError
from edurank.training.classifier import train_classifier
from edurank.training.config import ClassifierConfig
from tests.conftest import response_rows, write_responses
from tests.training.test_classifier import SMALL


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("classifier")
    data = write_responses(root / "responses.csv", response_rows(48, noise=0.1))
    return data, train_classifier(data, root / "out", ClassifierConfig(**{**SMALL, "epochs": 1}))


def test_the_int8_export_classifies_like_the_ensemble(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, source = trained
    assert main(["export", "--model", str(source), "--data", str(data), "--out", str(tmp_path),
                 "--check-items", "48"]) == 0
    path = tmp_path / (tmp_path / LATEST).read_text().strip()
    manifest = Manifest.read(path)
    assert manifest.kind == "classifier" and manifest.params["backend"] == "onnx-int8"
    assert manifest.base_model is not None and manifest.base_model.fingerprint == Manifest.read(source).weights
    assert manifest.metrics["responses"] == 48 and manifest.metrics["map3_delta"] >= -0.005
    exported, torch_model = MisconceptionClassifier.load(path), MisconceptionClassifier.load(source)
    responses = [Response("1", None, "4", "two and two make four"),
                 Response(None, "What is half of 10?", "20", "half means times two"), Response("9", "New?", "x", "")]
    ours, theirs = exported.classify(responses), torch_model.classify(responses)
    assert [p.labels[0] for p in ours] == [p.labels[0] for p in theirs]
    assert [p.question_id for p in ours] == [p.question_id for p in theirs]  # the book travels with the graph
    with pytest.raises(InputError, match="cannot be re-saved"):
        exported.save(tmp_path / "again")


def test_an_fp32_export_reproduces_the_probabilities(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, source = trained
    path = export_classifier(source, data, tmp_path, ExportConfig(backend="onnx", check_items=16))
    responses = [Response("1", None, "5", "not sure"), Response("2", None, "5", "no idea " * 40)]
    ours, _ = MisconceptionClassifier.load(path).probabilities(responses)
    theirs, _ = MisconceptionClassifier.load(source).probabilities(responses)
    assert np.abs(ours - theirs).max() < 1e-4


def test_without_labelled_responses_the_export_says_what_to_give(trained: tuple[Path, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, source = trained
    assert main(["export", "--model", str(source), "--out", str(tmp_path)]) == 2  # default data: a catalog
    error = capsys.readouterr().err.strip()
    assert error.startswith("edurank: error:") and len(error.splitlines()) == 1
    assert not list(tmp_path.iterdir())
