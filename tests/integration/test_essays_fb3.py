"""Smoke test of the essay trainer on a slice of ../shared/data/fb3: real essays (most longer than one
window) through the fast path and a short fine-tuned fold, blended, then scored as the service would."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from edurank.artifacts import read_manifest
from edurank.essays.config import WindowSpec
from edurank.essays.scorer import EssayScorer
from edurank.training.config import EssayConfig, FineTuneConfig
from edurank.training.essays import train_essays
from tests.conftest import report_figures, shared_dataset

pytestmark = pytest.mark.integration


def test_essay_scorer_on_an_fb3_slice(tmp_path: Path) -> None:
    data = tmp_path / "essays.csv"
    pl.read_csv(shared_dataset("fb3") / "train.csv").head(240).write_csv(data)
    tune = FineTuneConfig(epochs=1, essays_per_batch=8, evals_per_epoch=1, freeze_layers=4, learning_rate=1e-4)
    config = EssayConfig(paths=("fast", "finetune"), folds=3, train_folds=1, windows=WindowSpec(128, 112),
                         finetune=tune)
    path = train_essays(data, tmp_path / "out", config)
    metrics = read_manifest(path)["metrics"]
    oof = pl.read_parquet(path / "oof.parquet")
    report_figures("essays", metrics["oof"])
    assert oof["covered"].to_list() == (oof["fold"] == 0).to_list()  # only fold 0 was fine-tuned
    assert metrics["oof_essays"] == oof["covered"].sum() and 60 <= metrics["oof_essays"] <= 100
    assert set(metrics["oof"]) == {"dense", "tfidf", "finetuned", "blend"} and set(metrics["folds"]) == {"fold0"}
    blend = metrics["oof"]["blend"]
    assert blend["mcrmse"] < blend["mean_baseline_mcrmse"]
    scorer = EssayScorer.load(path)
    assert len(scorer.folds) == 1 and scorer.fast is not None
    scores = scorer.score(pl.read_csv(data)["full_text"].head(3).to_list())
    assert scores.shape == (3, 6) and 1 <= scores.min() and scores.max() <= 5
