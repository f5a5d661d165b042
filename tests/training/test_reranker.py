from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.artifacts import Manifest, ModelRef, write_manifest
from edurank.encoders import bundled_model_path, fingerprint
from edurank.errors import InputError
from edurank.reranker.calibration import Calibration
from edurank.reranker.cross_encoder.model import Reranker
from edurank.retriever.catalog import load_catalog
from edurank.retriever.config import CandidateConfig
from edurank.retriever.topic_folds import topic_folds
from edurank.training import reranker as module
from edurank.training.candidates import CrossFit, assign_miners
from edurank.training.config import RerankerConfig
from edurank.training.reranker import fold_inits, train_reranker, training_rows

FAST = {"candidates": CandidateConfig(6, 2), "hard_negatives": 4, "negatives": 3, "epochs": 1, "batch_size": 16,
        "topic_tokens": 16, "content_tokens": 24, "freeze_layers": 5, "folds": 2}


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


def test_fold_models_start_from_a_retriever_blind_to_their_whole_fold(sample_catalog: Path, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    config = RerankerConfig(folds=2, init="miners")
    crossfit = CrossFit.of(catalog, config)
    blind_to_0, blind_to_1 = fake_retriever(tmp_path, catalog, 0), fake_retriever(tmp_path, catalog, 1)
    plan = assign_miners(catalog, sorted(crossfit.assignment), [blind_to_0, blind_to_1])
    assert fold_inits(config, catalog, crossfit, plan) == {0: blind_to_0, 1: blind_to_1}
    with pytest.raises(InputError, match="no given retriever held out all of fold 1"):
        fold_inits(config, catalog, crossfit, {blind_to_0: plan[blind_to_0]})
    assert set(fold_inits(RerankerConfig(folds=2), catalog, crossfit, plan).values()) == {bundled_model_path()}


def test_training_rows_keep_positives_and_the_hardest_negatives() -> None:
    rows = pl.DataFrame({"topic_id": ["t"] * 6 + ["u"] * 3, "content_id": list("abcdefxyz"),
                         "rank": [1, 2, 3, 4, 5, 6, 1, 2, 3], "label": [False, True, False, False, True, False,
                                                                      False, False, False]})
    kept = training_rows(rows, 2)
    assert kept.filter(pl.col("topic_id") == "t")["content_id"].to_list() == ["a", "b", "c", "e"]
    assert kept.filter(pl.col("topic_id") == "u")["content_id"].to_list() == ["x", "y"]
    assert training_rows(rows, 0).height == rows.height


def test_listwise_batches_put_each_positive_first_among_its_topics_negatives(tmp_path: Path) -> None:
    rows = pl.DataFrame({"topic_id": ["t"] * 5 + ["u"] * 4, "content_id": [f"c{i}" for i in range(9)],
                         "rank": [1, 2, 3, 4, 5, 1, 2, 3, 4],
                         "label": [True, False, True, False, False, False, True, False, False]})
    config = RerankerConfig(loss="listwise", negatives=2, batch_size=6, freeze_layers=0)
    trainer = module.RerankerTrainer(config, rows, [("a", "b")] * 9, None, tmp_path, "t")
    batches = trainer.batches(0)
    groups = [group for batch in batches for group in batch]
    assert all(len(batch) <= 2 for batch in batches) and sorted(g[0] for g in groups) == [0, 2, 6]
    for group in groups:
        topic = rows["topic_id"][group[0]]
        assert len(group) == 3 and all(rows["topic_id"][r] == topic and not rows["label"][r] for r in group[1:])
    assert batches == trainer.batches(0) and trainer.prior_calibration() == Calibration()
    loss = trainer.step_loss(batches[0])
    assert loss.ndim == 0 and loss.item() > 0


def test_training_cross_fits_tunes_and_publishes(sample_catalog: Path, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    path = train_reranker(catalog, ["bundled"], tmp_path / "reranker", RerankerConfig(**FAST))
    manifest = Manifest.read(path)
    assert manifest.kind == "reranker" and manifest.details["rule"]["tuned"]
    assert manifest.details["calibration"]["fitted"] and set(manifest.metrics["folds"]) == {"0", "1"}
    held_out = manifest.metrics["held_out"]
    assert 0 < held_out["topics"] <= manifest.data["train_topics"] and 0.0 <= held_out["mean_f2"] <= 1.0
    options = manifest.metrics["calibration_options"]
    assert manifest.metrics["calibration_chosen"] == max(options, key=lambda o: options[o]["held_out_mean_f2"])
    assert manifest.metrics["retrieval_only"]["topics"] == held_out["topics"]
    assert manifest.depends == [ModelRef(str(bundled_model_path()), fingerprint(bundled_model_path()))]
    oof = pl.read_parquet(path / "oof.parquet")
    assert oof.group_by("topic_id").len()["len"].max() <= 8 and oof["logit"].is_not_null().all()
    assert oof["topic_id"].n_unique() == held_out["topics"]
    assert manifest.details["cross_fit"] == RerankerConfig(**FAST).cross_fit_params()
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
    rows = [{"topic_id": "t", "content_id": f"c{i}", "rank": i + 1, "label": i == 0} for i in range(21)]
    trainer = module.RerankerTrainer(RerankerConfig(negatives=5, folds=2, freeze_layers=0), pl.DataFrame(rows),
                                     [("topic", f"item {i}") for i in range(21)], None, tmp_path, "t")
    # 1 positive, 20 negatives of which 5 are seen per epoch: w = 5, r = 1/4, so the shift is log(20)
    assert trainer.pos_weight == 5.0
    assert np.isclose(trainer.prior_calibration().intercept, -np.log(20.0))


def test_settings_that_would_train_something_else_than_asked_are_refused(sample_catalog: Path, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    with pytest.raises(InputError, match="give --model the served retriever"):
        train_reranker(catalog, ["bundled"], tmp_path, RerankerConfig(init="miners"))
    with pytest.raises(InputError, match="--freeze-layers K > 0"):
        train_reranker(catalog, ["bundled"], tmp_path, RerankerConfig(late_interaction=True, freeze_layers=0))


def test_layers_trains_and_publishes_the_start_models_lower_layers_alone(sample_catalog: Path, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    config = RerankerConfig(**{**FAST, "layers": 2, "freeze_layers": 1, "cross_fit": False})
    path = train_reranker(catalog, ["bundled"], tmp_path / "small", config)
    small, start = Reranker.load(path), Reranker.load(None)
    assert len(small.model.encoder.encoder.layer) == small.model.encoder.config.num_hidden_layers == 2
    frozen, trained = (layer.state_dict() for layer in small.model.encoder.encoder.layer)
    start_layers = [layer.state_dict() for layer in start.model.encoder.encoder.layer]
    assert all(np.array_equal(frozen[k].numpy(), start_layers[0][k].numpy()) for k in frozen)
    assert not all(np.array_equal(trained[k].numpy(), start_layers[1][k].numpy()) for k in trained)
    assert np.isfinite(small.logits([("Adding fractions", "Fractions with unlike denominators")])).all()
    with pytest.raises(InputError, match="--layers 7: the start model has 6 layers"):
        train_reranker(catalog, ["bundled"], tmp_path / "big", RerankerConfig(**{**FAST, "layers": 7}))
    with pytest.raises(InputError, match="--freeze-layers 5 with --layers 2: keep at least one trainable"):
        train_reranker(catalog, ["bundled"], tmp_path / "all", RerankerConfig(**{**FAST, "layers": 2}))
