from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.artifacts import Manifest
from ranker.model import Ranker
from retriever.catalog import load_catalog
from retriever.splits import TRAIN_ONLY
from training.ranker import RankerConfig, candidates_for, cross_fitted_features, evaluate_ranker, train_ranker


@pytest.fixture(scope="module")
def trained(sample_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("ranker")
    return train_ranker(load_catalog(sample_catalog), ["bundled"], out, RankerConfig(folds=3)), out


def test_the_published_ranker_reports_held_out_figures_and_loads(trained: tuple[Path, Path]) -> None:
    path, _ = trained
    manifest = Manifest.read(path)
    assert manifest.kind == "ranker" and manifest.depends and manifest.params["folds"] == 3
    metrics = manifest.metrics
    assert set(metrics["folds"]) == {"0", "1", "2"}
    assert 0 < metrics["held_out"]["mean_f2"] <= 1 and 0 < metrics["retrieval_only"]["mean_f2"] <= 1
    assert metrics["candidate_recall"]["union"] >= metrics["candidate_recall"]["dense@64"]
    ranker = Ranker.load(path.parent)
    assert ranker.rule.tuned and ranker.features[:2] == ["dense_score", "dense_rank"]
    oof = pl.read_parquet(path / "oof.parquet")
    assert TRAIN_ONLY not in oof["fold"].to_list() and oof["probability"].is_between(0, 1).all()


def test_probability_never_falls_as_the_dense_cosine_rises(trained: tuple[Path, Path], sample_catalog: Path) -> None:
    path, out = trained
    ranker = Ranker.load(path)
    catalog = load_catalog(sample_catalog)
    config = RankerConfig(folds=3)
    candidates, crossfit, _ = candidates_for(catalog, ["bundled"], out, config)
    frame = cross_fitted_features(catalog, candidates, crossfit, config.groups).head(200)
    before = ranker.scores(frame)
    after = ranker.scores(frame.with_columns(pl.col("dense_score") + 0.2))
    assert np.all(after >= before - 1e-9)


def test_cross_fitting_is_deterministic_and_reuses_the_mined_candidates(trained: tuple[Path, Path],
                                                                       sample_catalog: Path) -> None:
    _, out = trained
    catalog = load_catalog(sample_catalog)
    config = RankerConfig(folds=3, objective="lambdarank", trees=50)
    assert len(list((out / ".cache").glob("candidates-*.parquet"))) == 1
    runs = [evaluate_ranker(catalog, *candidates_for(catalog, ["bundled"], out, config)[:2], config)
            for _ in range(2)]
    assert len(list((out / ".cache").glob("candidates-*.parquet"))) == 1  # mined once, by the fixture
    assert runs[0][0]["score"].equals(runs[1][0]["score"]) and runs[0][2] == runs[1][2]
    assert 0 < runs[0][3]["held_out"]["mean_f2"] <= 1


def test_unknown_feature_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        RankerConfig(groups=("dense", "astrology"))


def test_explanations_add_up_to_the_score(trained: tuple[Path, Path], sample_catalog: Path) -> None:
    path, out = trained
    ranker = Ranker.load(path)
    catalog = load_catalog(sample_catalog)
    candidates, crossfit, _ = candidates_for(catalog, ["bundled"], out, RankerConfig(folds=3))
    frame = cross_fitted_features(catalog, candidates, crossfit, ranker.groups).head(50)
    contributions = ranker.contributions(frame)
    assert contributions.shape == (50, len(ranker.features) + 1)  # one per feature, plus the expected value
    assert np.allclose(contributions.sum(axis=1), ranker.scores(frame), atol=1e-6)
