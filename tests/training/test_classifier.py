"""The classifier trainer on synthetic responses: folds x seeds members, the artifact the service loads,
resuming after a kill, training without flagged rows, AWP, and length-grouped batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import edurank.training.classifier as trainer_module
import edurank.training.loop as loop_module
from edurank.artifacts import read_manifest
from edurank.classifier.model import Member, MemberConfig
from edurank.classifier.predictor import MisconceptionClassifier, Response
from edurank.encoders import load_hf_encoder
from edurank.errors import InputError
from edurank.layers import Trunk
from edurank.training.adversarial import AWP
from edurank.training.classifier import MemberTrainer, train_classifier
from edurank.training.config import ClassifierConfig
from edurank.training.trunk_cache import TrunkCache, length_grouped_batches
from tests.conftest import response_rows, write_responses

SMALL = {"folds": 2, "max_length": 48, "freeze_layers": 5, "epochs": 2, "batch_size": 8, "learning_rate": 3e-4,
         "head_learning_rate": 3e-3}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("classifier")
    data = write_responses(root / "responses.csv", response_rows(64, noise=0.1))
    return data, train_classifier(data, root / "out", ClassifierConfig(seeds=(1, 2), **SMALL))


def test_members_per_fold_and_seed_with_oof_figures_and_label_issues(trained: tuple[Path, Path]) -> None:
    data, path = trained
    manifest = read_manifest(path)
    assert manifest["kind"] == "classifier" and manifest["data"]["labels"] == 5
    assert sorted(p.name for p in (path / "members").iterdir()) == [
        "fold0-seed1", "fold0-seed2", "fold1-seed1", "fold1-seed2"]
    metrics = manifest["metrics"]
    assert metrics["oof_rows"] == 64 and 0 < metrics["oof"]["map3"] <= 1
    assert set(metrics["members"]) == {"fold0-seed1", "fold0-seed2", "fold1-seed1", "fold1-seed2"}
    oof = pl.read_parquet(path / "oof.parquet")
    assert oof.height == 64 and np.allclose(np.array(oof["probabilities"].to_list()).sum(axis=1), 1, atol=1e-4)
    issues = pl.read_parquet(path / "label_issues.parquet")
    assert metrics["label_issues"] == issues.height
    assert set(issues.columns) >= {"row_id", "given", "suggested", "given_probability", "quality"}
    assert not (path.parent / ".cache").exists() or any((path.parent / ".cache").glob("trunk-*.npy"))


def test_the_artifact_classifies_known_and_unseen_questions(trained: tuple[Path, Path]) -> None:
    classifier = MisconceptionClassifier.load(trained[1])
    wrong, unseen = classifier.classify([Response("1", None, "5", "you add one more at the end"),
                                         Response(None, "Name a prime number", "9", "it is odd")])
    assert wrong.known_question and all(label.startswith("False_") for label in wrong.labels)
    assert len(wrong.labels) == 3 and wrong.probabilities == sorted(wrong.probabilities, reverse=True)
    assert not unseen.known_question and len(unseen.labels) == 3
    by_text = classifier.classify([Response(None, "What is 2+2?", "4", "two and two make four")])[0]
    assert by_text.known_question and by_text.labels[0].startswith("True_")


def test_a_killed_run_resumes_and_keeps_finished_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_responses(tmp_path / "r.csv", response_rows(32))
    config = ClassifierConfig(**{**SMALL, "epochs": 2})
    original, calls = loop_module.save_checkpoint, []

    def killed_after_third(path: Path, payload: dict) -> None:  # fold 0 done, fold 1 killed after epoch 1
        original(path, payload)
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop_module, "save_checkpoint", killed_after_third)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(data, tmp_path / "out", config)
    staging = next((tmp_path / "out").glob(".classifier-*"))
    assert (staging / "members" / "fold0-seed42" / "predictions.npy").is_file()
    assert (staging / "members" / "fold1-seed42" / "checkpoint.pt").is_file()
    monkeypatch.setattr(loop_module, "save_checkpoint", original)
    path = train_classifier(data, tmp_path / "out", config)
    history = read_manifest(path)["metrics"]["members"]["fold1-seed42"]["history"]
    assert [h["epoch"] for h in history] == [1.0, 2.0]  # epoch 1 of fold 1 was not redone
    assert not any((tmp_path / "out").glob(".classifier-*"))


def test_flagged_rows_can_be_dropped(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, first = trained
    flagged = pl.read_parquet(first / "label_issues.parquet").height
    config = ClassifierConfig(**{**SMALL, "epochs": 1}, label_issues=str(first.parent), noisy="drop")
    metrics = read_manifest(train_classifier(data, tmp_path / "out", config))["metrics"]
    assert metrics["flagged_in_training"] == flagged
    assert metrics["oof_unflagged"]["rows"] == 64 - flagged
    weights, marked = trainer_module.train_weights(config, [str(i) for i in range(64)])
    assert marked.sum() == flagged and set(weights[marked]) <= {0.0}


def test_awp_trains_and_restores_the_weights() -> None:
    encoder, _ = load_hf_encoder(None)
    member = Member(encoder, MemberConfig(labels=3, split=5))
    awp = AWP(member, lr=1.0, eps=0.01)
    hidden, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.long)
    member(hidden, mask).sum().backward()
    weight = member.head.weight
    before = weight.detach().clone()
    awp.attack()
    moved = weight.detach() - before
    assert moved.abs().max() > 0 and torch.all(moved.abs() <= 0.01 * before.abs() + 1e-7)
    awp.restore()
    assert torch.equal(weight, before)


def test_awp_option_runs_end_to_end(tmp_path: Path) -> None:
    data = write_responses(tmp_path / "r.csv", response_rows(24))
    config = ClassifierConfig(**{**SMALL, "epochs": 2}, awp_lr=1.0, awp_from_epoch=1)
    assert read_manifest(train_classifier(data, tmp_path / "out", config))["params"]["awp_lr"] == 1.0


def test_length_grouped_batches_cover_every_row_once_and_repeat_by_seed() -> None:
    rows, lengths = np.arange(3, 103), np.random.default_rng(0).integers(5, 50, size=103)
    batches = length_grouped_batches(rows, lengths, 8, seed=3)
    assert sorted(r for b in batches for r in b) == list(rows) and max(map(len, batches)) == 8
    assert batches == length_grouped_batches(rows, lengths, 8, seed=3)
    assert batches != length_grouped_batches(rows, lengths, 8, seed=4)


@pytest.mark.parametrize(("changes", "message"), [
    ({"noisy": "drop"}, "--label-issues"), ({"seeds": ()}, "--seeds"), ({"train_folds": 9}, "--train-folds"),
    ({"noisy": "ignore"}, "--noisy"), ({"freeze_layers": 6}, "--freeze-layers")])
def test_bad_options_say_which(tmp_path: Path, changes: dict, message: str) -> None:
    data = write_responses(tmp_path / "r.csv", response_rows(16))
    with pytest.raises(InputError, match=message):
        train_classifier(data, tmp_path / "out", ClassifierConfig(**{**SMALL, **changes}))


def test_held_out_predictions_come_back_in_row_order(tmp_path: Path) -> None:
    encoder, tokenizer = load_hf_encoder(None)
    trunk = Trunk(encoder, 5)
    prompts = ["a b c d e f g h", "a", "a b c", "a b c d e f g h i j k l", "a b"]
    cache = TrunkCache.build(trunk, 384, tokenizer, prompts, 32, tmp_path / "trunk.npy")
    allowed = np.ones((5, 3), dtype=bool)
    member_trainer = MemberTrainer(ClassifierConfig(**SMALL), encoder, cache, np.zeros(5, dtype=np.int64), allowed,
                                   np.ones(5, dtype=np.float32), np.arange(5), np.array([3, 0, 4]), 42, 0, tmp_path)
    together = member_trainer.predict(np.array([3, 0, 4]))
    alone = [member_trainer.predict(np.array([row]))[0] for row in (3, 0, 4)]
    assert np.allclose(together, alone, atol=1e-5)
