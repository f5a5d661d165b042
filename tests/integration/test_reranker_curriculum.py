"""Smoke test of the reranker trainer on a slice of ../shared/data/curriculum: candidates mined, fold models
cross-fitted, calibration fitted and a rule tuned on their out-of-fold scores, the served model loadable."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from edurank.artifacts import read_manifest
from edurank.reranker.cross_encoder.model import Reranker
from edurank.retriever.catalog import load_catalog
from edurank.retriever.config import CandidateConfig
from edurank.training.config import RerankerConfig
from edurank.training.reranker import train_reranker
from tests.conftest import report_figures, shared_dataset
from tests.integration.test_curriculum_training import slice_catalog

pytestmark = pytest.mark.integration


def test_reranker_smoke_on_a_curriculum_slice(tmp_path: Path) -> None:
    catalog = load_catalog(slice_catalog(shared_dataset("curriculum"), tmp_path / "slice", 60))
    config = RerankerConfig(candidates=CandidateConfig(8, 4), hard_negatives=4, negatives=4, epochs=1, batch_size=16,
                            topic_tokens=24, content_tokens=40, freeze_layers=3, learning_rate=1e-4, folds=3)
    path = train_reranker(catalog, ["bundled"], tmp_path / "reranker", config)
    manifest = read_manifest(path)
    held_out = manifest["metrics"]["held_out"]
    report_figures("reranker", held_out)
    assert held_out["topics"] >= 40 and set(manifest["metrics"]["folds"]) == {"0", "1", "2"}
    assert 0.0 < held_out["mean_f2"] <= 1.0 and held_out["candidate_recall"] > 0.3
    oof = pl.read_parquet(path / "oof.parquet")
    assert oof["topic_id"].n_unique() == held_out["topics"] and oof["logit"].is_not_null().all()
    # Platt scaling with an intercept: the mean probability equals the positive rate it was fitted on
    assert abs(oof["probability"].mean() - oof["label"].mean()) < 0.02
    reranker = Reranker.load(path)
    assert reranker.rule.tuned and reranker.calibration.fitted and reranker.format.content_tokens == 40
