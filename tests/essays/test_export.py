"""`edurank export` of the essay scorer: the fast path's encoder and each fine-tuned fold as ONNX graphs,
MCRMSE checked against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edurank.artifacts import LATEST, Manifest
from edurank.backends.config import ExportConfig
from edurank.cli.main import main
from edurank.essays.config import WindowSpec
from edurank.essays.export import export_essays
from edurank.essays.scorer import EssayScorer
from edurank.training.config import EssayConfig, FineTuneConfig
from edurank.training.essays import train_essays
from tests.conftest import essay_rows, write_essays

TEXTS = ["I think school should start later because students are tired. " * 6, "Short essay, with a misteak."]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Both paths, an attention-pooled fold model among them: every graph the export writes."""
    root = tmp_path_factory.mktemp("essays")
    data = write_essays(root / "essays.csv", essay_rows(24))
    tune = FineTuneConfig(epochs=1, essays_per_batch=4, evals_per_epoch=1, pooling="attention", freeze_layers=4)
    config = EssayConfig(paths=("fast", "finetune"), folds=2, windows=WindowSpec(max_tokens=32, stride=24),
                         finetune=tune)
    return data, train_essays(data, root / "out", config)


def test_the_int8_export_scores_like_torch(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, source = trained
    assert main(["export", "--model", str(source), "--data", str(data), "--out", str(tmp_path),
                 "--check-items", "24"]) == 0
    path = tmp_path / (tmp_path / LATEST).read_text().strip()
    manifest = Manifest.read(path)
    assert manifest.kind == "essays" and manifest.params["backend"] == "onnx-int8"
    assert manifest.base_model is not None and manifest.base_model.fingerprint == Manifest.read(source).weights
    assert manifest.metrics["essays"] == 24 and manifest.metrics["mcrmse_delta"] <= 0.005
    exported, torch_scorer = EssayScorer.load(path), EssayScorer.load(source)
    assert len(exported.folds) == len(torch_scorer.folds) == 2
    assert exported.blend.to_dict() == torch_scorer.blend.to_dict()
    assert np.abs(exported.score(TEXTS) - torch_scorer.score(TEXTS)).max() < 0.1


def test_an_fp32_export_reproduces_every_member(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, source = trained
    path = export_essays(source, data, tmp_path, ExportConfig(backend="onnx", check_items=8))
    ours, theirs = EssayScorer.load(path).members(TEXTS), EssayScorer.load(source).members(TEXTS)
    assert set(ours) == set(theirs) == {"dense", "tfidf", "finetuned"}
    for member, scores in theirs.items():
        assert np.abs(ours[member] - scores).max() < 1e-3, member


def test_without_scored_essays_the_export_says_what_to_give(trained: tuple[Path, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _, source = trained
    assert main(["export", "--model", str(source), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("edurank: error: --data") and "scored essays" in error and len(error.splitlines()) == 1
