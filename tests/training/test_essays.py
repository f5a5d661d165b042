"""The essay trainer on tiny synthetic essays: the fast path end to end, the fine-tuned path's resume,
LLRD groups and FGM."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import edurank.training.loop as loop_module
from edurank.artifacts import read_manifest
from edurank.errors import InputError
from edurank.essays.config import FastConfig, WindowSpec
from edurank.essays.data import load_essays, scores
from edurank.essays.model import EssayModel
from edurank.essays.scorer import EssayScorer
from edurank.training.adversarial import FGM
from edurank.training.config import EssayConfig, FineTuneConfig
from edurank.training.essays import FineTuneTrainer, train_essays
from edurank.training.loop import encoder_stack, layerwise_groups
from tests.conftest import essay_rows, write_essays

SMALL = WindowSpec(max_tokens=32, stride=24)


def test_fast_path_trains_scores_and_reports(tmp_path: Path) -> None:
    data = write_essays(tmp_path / "essays.csv", essay_rows(40))
    config = EssayConfig(paths=("fast",), folds=2, windows=SMALL)
    path = train_essays(data, tmp_path / "out", config)
    manifest = read_manifest(path)
    oof = manifest["metrics"]["oof"]
    assert manifest["kind"] == "essays" and set(oof) == {"dense", "tfidf", "blend"}
    assert oof["blend"]["mcrmse"] < oof["blend"]["mean_baseline_mcrmse"]  # learnt something real
    assert manifest["seconds"]["fast"] > 0
    stored = pl.read_parquet(path / "oof.parquet")
    assert stored.height == 40 and stored["covered"].all() and set(stored["fold"].unique()) == {0, 1}
    scorer = EssayScorer.load(tmp_path / "out")  # the root resolves to LATEST
    frame = load_essays(data)
    predicted = scorer.score(frame["full_text"].head(5).to_list())
    assert predicted.shape == (5, 6) and predicted.min() >= 1 and predicted.max() <= 5
    out = tmp_path / "out"
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".*.publish"))  # staging is gone once published
    cached = list((out / ".cache").glob("fast-features-*.npy"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = train_essays(data, out, dataclasses.replace(config, fast=FastConfig(tfidf_alpha=5.0)))
    assert again != path and cached[0].stat().st_mtime_ns == stamp  # another fit, the same cached features


def finetune_config(**changes: object) -> EssayConfig:
    tune = FineTuneConfig(**{"epochs": 2, "essays_per_batch": 4, "evals_per_epoch": 1, "patience": 5,
                             "learning_rate": 1e-4, **changes})
    return EssayConfig(paths=("finetune",), folds=2, windows=SMALL, finetune=tune)


def test_finetuning_resumes_from_the_last_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = essay_rows(12)
    targets = scores(pl.DataFrame(rows))
    config = finetune_config()
    windows = EssayModel.from_base(None, "mean", SMALL).make_windows([r["full_text"] for r in rows])
    train, valid = np.arange(8), np.arange(8, 12)

    original = loop_module.save_checkpoint

    def stop_after_first(path: Path, payload: dict) -> None:  # a kill right after the checkpoint
        original(path, payload)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop_module, "save_checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        FineTuneTrainer(config, windows, targets, train, valid, tmp_path, "t").run()
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "best" / "essay_model.json").is_file()
    monkeypatch.setattr(loop_module, "save_checkpoint", original)
    model, predicted, history = FineTuneTrainer(config, windows, targets, train, valid, tmp_path, "t").run()
    assert [h["epoch"] for h in history] == [1.0, 2.0]  # epoch 1 was not redone
    assert predicted.shape == (4, 6) and isinstance(model, EssayModel)


def test_pooling_options_give_six_scores_per_essay() -> None:
    texts = ["A short essay.", " ".join(["A longer essay that needs several windows."] * 8)]
    for pooling in ("mean", "attention", "weighted-layer"):
        model = EssayModel.from_base(None, pooling, SMALL)
        assert model.predict(texts).shape == (2, 6)


def test_llrd_gives_lower_layers_smaller_rates() -> None:
    model = EssayModel.from_base(None, "attention", SMALL).regressor
    groups = layerwise_groups(model, encoder_stack(model.encoder), 1e-4, 0.5, 1e-3, 0.01)
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    layers = model.encoder.base_model.encoder.layer
    assert rate_of[id(layers[-1].output.dense.weight)] == pytest.approx(1e-4)
    assert rate_of[id(layers[-2].output.dense.weight)] == pytest.approx(5e-5)
    assert rate_of[id(model.encoder.base_model.embeddings.word_embeddings.weight)] == pytest.approx(1e-4 * 0.5 ** 6)
    assert rate_of[id(model.head.weight)] == rate_of[id(model.pooling.score[0].weight)] == 1e-3
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay_of[id(model.head.bias)] == 0 and decay_of[id(model.head.weight)] == 0.01


def test_fgm_perturbs_then_restores_the_embeddings() -> None:
    model = EssayModel.from_base(None, "mean", SMALL)
    fgm = FGM(model.regressor, epsilon=1.0)
    embeddings = model.regressor.encoder.base_model.embeddings.word_embeddings.weight
    before = embeddings.detach().clone()
    windows = model.make_windows(["an essay about school"])
    model.forward(windows, [0]).sum().backward()
    fgm.attack()
    assert not torch.equal(embeddings, before)
    fgm.restore()
    assert torch.equal(embeddings, before)


def test_fgm_needs_trainable_embeddings() -> None:
    with pytest.raises(InputError, match="--fgm"):
        FineTuneConfig(fgm_epsilon=1.0, freeze_layers=2)


def test_fgm_accumulation_and_smoothl1_train_together(tmp_path: Path) -> None:
    rows = essay_rows(10)
    targets = scores(pl.DataFrame(rows))
    config = finetune_config(epochs=1, fgm_epsilon=1.0, accumulation=2, loss="smoothl1", pooling="weighted-layer",
                             essays_per_batch=2)
    windows = EssayModel.from_base(None, "mean", SMALL).make_windows([r["full_text"] for r in rows])
    trainer = FineTuneTrainer(config, windows, targets, np.arange(6), np.arange(6, 10), tmp_path, "t")
    before = trainer.model.regressor.encoder.base_model.embeddings.word_embeddings.weight.detach().clone()
    model, predicted, history = trainer.run()
    after = model.regressor.encoder.base_model.embeddings.word_embeddings.weight
    assert len(history) == 1 and np.isfinite(predicted).all()
    assert not torch.equal(before, after)  # the embeddings FGM perturbs are trainable and did train
    assert model.regressor.pooling_kind == "weighted-layer"
