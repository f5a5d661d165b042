from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.artifacts import Manifest, ModelRef, write_manifest
from edurank.encoders import bundled_model_path, fingerprint
from edurank.errors import InputError
from reranker.model import Reranker
from retriever.catalog import load_catalog
from retriever.splits import topic_folds
from training import reranker as module
from training.reranker import RerankerConfig, assign_miners, mine_candidates, train_reranker

FAST = {"candidates": 6, "negatives": 3, "epochs": 1, "batch_size": 16, "topic_tokens": 16,
        "content_tokens": 24, "freeze_layers": 5, "folds": 2}


def fake_retriever(tmp_path: Path, catalog, fold: int | None, folds: int = 2) -> Path:
    """A directory whose manifest says it is a retriever trained with `fold` held out (miners are chosen
    from manifests alone)."""
    path = tmp_path / f"retriever-{fold}"
    path.mkdir()
    write_manifest(path, Manifest(kind="retriever", version=f"v{fold}", weights="w" * 64, base_model=None,
                                  data={"hash": catalog.data_hash, "files": []},
                                  params={"fold": fold, "folds": folds, "seed": 42}).to_dict())
    return path


def test_each_topic_is_mined_by_a_retriever_that_never_saw_it(sample_catalog: Path, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    folds = topic_folds(catalog, 2)
    topics = sorted(t for t, f in folds.items() if f >= 0)
    blind_to_0, blind_to_1 = fake_retriever(tmp_path, catalog, 0), fake_retriever(tmp_path, catalog, 1)
    plan = assign_miners(catalog, topics, [blind_to_0, blind_to_1])
    assert {folds[t] for t in plan[blind_to_0]} == {0} and {folds[t] for t in plan[blind_to_1]} == {1}
    with pytest.raises(InputError, match="every given retriever trained on these topics"):
        assign_miners(catalog, topics, [fake_retriever(tmp_path, catalog, None)])


def test_missed_gold_items_are_added_as_positives(tiny_catalog: Path) -> None:
    catalog = load_catalog(tiny_catalog)
    frame = mine_candidates(catalog, {bundled_model_path(): ["fr_add", "geo_area"]}, 1, {"fr_add": 0, "geo_area": 1})
    for topic in ("fr_add", "geo_area"):
        rows = frame.filter(pl.col("topic_id") == topic)
        assert rows.filter(pl.col("retrieved")).height == 1
        assert set(rows.filter(pl.col("label"))["content_id"]) == catalog.gold[topic]
        assert rows.filter(~pl.col("retrieved"))["rank"].to_list() == [2] * rows.filter(~pl.col("retrieved")).height


def test_training_cross_fits_tunes_and_publishes(sample_catalog: Path, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    path = train_reranker(catalog, ["bundled"], tmp_path / "reranker", RerankerConfig(**FAST))
    manifest = Manifest.read(path)
    assert manifest.kind == "reranker" and manifest.details["rule"]["tuned"]
    assert manifest.details["calibration"]["fitted"] and set(manifest.metrics["folds"]) == {"0", "1"}
    held_out = manifest.metrics["held_out"]
    assert held_out["topics"] == manifest.data["train_topics"] and 0.0 <= held_out["mean_f2"] <= 1.0
    options = manifest.metrics["calibration_options"]
    assert manifest.metrics["calibration_chosen"] == max(options, key=lambda o: options[o]["held_out_mean_f2"])
    assert manifest.metrics["retrieval_only"]["topics"] == held_out["topics"]
    assert manifest.depends == [ModelRef(str(bundled_model_path()), fingerprint(bundled_model_path()))]
    oof = pl.read_parquet(path / "oof.parquet")
    assert oof["retrieved"].all() and oof.group_by("topic_id").len()["len"].max() <= 6
    reranker = Reranker.load(tmp_path / "reranker")
    assert reranker.rule.to_dict() == manifest.details["rule"] and reranker.calibration.fitted
    assert reranker.fingerprint == manifest.weights != fingerprint(bundled_model_path())
    assert not list(path.rglob("fold-*")) and not list(path.rglob("*.pt"))


def test_a_failed_run_resumes_without_retraining_finished_folds(sample_catalog: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog(sample_catalog)
    config = RerankerConfig(**FAST)
    original = module.RerankerTrainer.run
    labels: list[str] = []

    def crash_on_final(self):
        labels.append(self.label)
        if self.label == "final" and labels.count("final") == 1:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(module.RerankerTrainer, "run", crash_on_final)
    with pytest.raises(KeyboardInterrupt):
        train_reranker(catalog, ["bundled"], tmp_path / "out", config)
    staging = [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".reranker-")]
    assert len(staging) == 1 and all((staging[0] / f"fold-{f}" / "predictions.npy").is_file() for f in (0, 1))
    train_reranker(catalog, ["bundled"], tmp_path / "out", config)
    assert labels == ["fold 0", "fold 1", "final", "final"]


def test_without_cross_fitting_the_prior_correction_undoes_weighting_and_sampling(tmp_path: Path) -> None:
    rows = [{"topic_id": "t", "content_id": f"c{i}", "rank": i + 1, "label": i == 0, "retrieved": True, "fold": 0,
             "a": "topic", "b": f"item {i}"} for i in range(21)]
    trainer = module.RerankerTrainer(RerankerConfig(negatives=5, folds=2), pl.DataFrame(rows), tmp_path, "t")
    # 1 positive, 20 negatives of which 5 are seen per epoch: w = 5, r = 1/4, so the shift is log(20)
    assert trainer.pos_weight == 5.0
    assert np.isclose(trainer.prior_calibration().intercept, -np.log(20.0))
