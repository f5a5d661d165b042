"""`edurank distil`: one model in place of the classifier's or the essay scorer's ensemble, cross-fitted on the
teacher's folds and kept only within --max-delta of the teacher's out-of-fold figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edurank.artifacts import LATEST, Manifest
from edurank.classifier.model import masked_log_softmax
from edurank.classifier.predictor import MisconceptionClassifier, Response
from edurank.cli.main import main
from edurank.essays.config import WindowSpec
from edurank.essays.scorer import EssayScorer
from edurank.training.classifier import SoftTargets, train_classifier
from edurank.training.config import ClassifierConfig, EssayConfig, FineTuneConfig
from edurank.training.essays import train_essays
from tests.conftest import essay_rows, response_rows, write_essays, write_responses
from tests.training.test_classifier import SMALL


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two seeds per fold: a teacher of four members."""
    root = tmp_path_factory.mktemp("teacher")
    data = write_responses(root / "responses.csv", response_rows(64, noise=0.1))
    return data, train_classifier(data, root / "out", ClassifierConfig(seeds=(1, 2), **{**SMALL, "epochs": 1}))


def test_the_soft_loss_vanishes_where_the_student_is_the_teacher_and_ignores_masked_labels() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0, 9.0], [0.1, 0.2, 0.3, 0.4]])
    allowed = torch.tensor([[True, True, True, False], [True, True, True, True]])
    teacher = masked_log_softmax(logits / 5.0, allowed).exp()
    hard = torch.tensor(1.0)
    loss = SoftTargets(teacher, 5.0, 0.9).loss(logits, allowed, [0, 1], hard)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.1)  # only the hard term is left
    other = SoftTargets(teacher, 5.0, 0.9).loss(logits.flip(1), allowed, [0, 1], hard)
    assert other.item() > 0.1


def test_a_kept_student_is_one_member_with_its_figures_and_speed(teacher: tuple[Path, Path], tmp_path: Path) -> None:
    data, path = teacher
    assert main(["distil", "--teacher", str(path), "--data", str(data), "--out", str(tmp_path), "--max-delta", "1",
                 "--speed-items", "16"]) == 0
    student_path = tmp_path / (tmp_path / LATEST).read_text().strip()
    manifest = Manifest.read(student_path)
    assert manifest.kind == "classifier" and manifest.metrics["distilled_from"] == Manifest.read(path).version
    assert manifest.metrics["teacher_members"] == 4 and manifest.metrics["oof_rows"] == 64
    assert {"oof_map3", "teacher_oof_map3", "map3_delta", "speedup"} <= set(manifest.metrics)
    student = MisconceptionClassifier.load(student_path)
    assert len(student.ensemble.members) == 1 and student.labels == MisconceptionClassifier.load(path).labels
    prediction = student.classify([Response("1", None, "5", "you add one more at the end")])[0]
    assert prediction.known_question and len(prediction.labels) == 3


def test_a_student_past_the_bar_or_other_data_is_refused_and_nothing_published(
        teacher: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, path = teacher
    assert main(["distil", "--teacher", str(path), "--data", str(data), "--out", str(tmp_path / "a"),
                 "--max-delta", "-1"]) == 2  # a student 1.0 above the teacher: never
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("edurank: error: --max-delta -1.0: the student is not kept") and "MAP@3" in error
    assert not (tmp_path / "a" / LATEST).exists()
    other = write_responses(tmp_path / "other.csv", response_rows(64, seed=1))
    assert main(["distil", "--teacher", str(path), "--data", str(other), "--out", str(tmp_path / "b")]) == 2
    assert "not the data the teacher" in capsys.readouterr().err


def test_an_essay_scorer_distils_into_one_fine_tuned_model(tmp_path: Path) -> None:
    data = write_essays(tmp_path / "essays.csv", essay_rows(24))
    tune = FineTuneConfig(epochs=1, essays_per_batch=4, evals_per_epoch=1, freeze_layers=4)
    teacher = train_essays(data, tmp_path / "teacher", EssayConfig(
        paths=("fast", "finetune"), folds=2, windows=WindowSpec(max_tokens=32, stride=24), finetune=tune))
    assert main(["distil", "--teacher", str(teacher), "--data", str(data), "--out", str(tmp_path / "student"),
                 "--max-delta", "5", "--speed-items", "4"]) == 0
    path = tmp_path / "student" / (tmp_path / "student" / LATEST).read_text().strip()
    metrics = Manifest.read(path).metrics
    assert metrics["distilled_from"] == Manifest.read(teacher).version and metrics["oof_essays"] == 24
    assert metrics["mcrmse_delta"] == pytest.approx(metrics["oof_mcrmse"] - metrics["teacher_oof_mcrmse"], abs=1e-4)
    student = EssayScorer.load(path)
    assert student.fast is None and len(student.folds) == 1 and student.blend.members == ["finetuned"]
    assert student.score(["A short essay about school."]).shape == (1, 6)
