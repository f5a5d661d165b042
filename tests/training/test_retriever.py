from __future__ import annotations

from pathlib import Path

import pytest

import edurank.training.loop as loop_module
from edurank.artifacts import Manifest, read_manifest
from edurank.retriever.catalog import load_catalog
from edurank.retriever.model import BiEncoder
from edurank.training import retriever as trainer_module
from edurank.training.config import RetrieverConfig
from edurank.training.retriever import RetrieverTrainer, train_retriever

FAST = {"epochs": 1, "hard_negative_epochs": 1, "batch_size": 8, "max_tokens": 48, "top_n": 8,
        "freeze_layers": 5, "eval_ks": (1, 5, 10)}


def test_training_publishes_a_loadable_model_with_a_manifest(sample_catalog: Path, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    config = RetrieverConfig(rounds=1, folds=4, fold=0, **FAST)
    path = train_retriever(catalog, tmp_path / "retriever", config)
    manifest = Manifest.read(path)
    assert manifest.kind == "retriever" and manifest.data["hash"] == catalog.data_hash
    assert manifest.params["rounds"] == 1 and manifest.data["held_out_topics"] > 0
    history = manifest.metrics["history"]
    assert [(h["round"], h["epoch"]) for h in history] == [(-1, 0), (0, 1), (1, 1)]
    assert all(h["label"] in ("untrained", "held-out") for h in history)
    assert not list(path.rglob("*.pt")) and not list(tmp_path.glob("retriever/.*"))
    encoder = BiEncoder.load(tmp_path / "retriever")  # the artifact root resolves to its LATEST version
    assert encoder.max_tokens == 48 and encoder.fingerprint == manifest.weights
    assert manifest.base_model is not None and manifest.base_model.fingerprint == BiEncoder.load(None).fingerprint
    assert encoder.fingerprint != manifest.base_model.fingerprint


def test_an_interrupted_run_resumes_from_its_checkpoint(sample_catalog: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog(sample_catalog)
    config = RetrieverConfig(rounds=1, **FAST)
    original, saves = loop_module.save_checkpoint, []

    def crash_after_first_checkpoint(path: Path, payload: dict) -> None:
        original(path, payload)
        saves.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop_module, "save_checkpoint", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_retriever(catalog, tmp_path / "out", config)
    staging = [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".retriever-")]
    assert len(staging) == 1 and saves == [staging[0] / "round0" / "checkpoint.pt"]

    monkeypatch.setattr(loop_module, "save_checkpoint", original)
    evaluated: list[int] = []
    real_evaluate = RetrieverTrainer.evaluate

    def counting_evaluate(self):
        evaluated.append(1)
        return real_evaluate(self)

    monkeypatch.setattr(RetrieverTrainer, "evaluate", counting_evaluate)
    rates: list[int] = []
    real_loop = RetrieverTrainer.round_loop

    def recording_loop(self, round_, extra):
        loop = real_loop(self, round_, extra)
        rates.append(loop.scheduler.last_epoch)
        return loop

    monkeypatch.setattr(RetrieverTrainer, "round_loop", recording_loop)
    path = train_retriever(catalog, tmp_path / "out", config)
    assert rates == [0]  # only round 1 ran, on a fresh schedule, not round 0's finished one
    history = read_manifest(path)["metrics"]["history"]
    assert [(h["round"], h["epoch"]) for h in history] == [(-1, 0), (0, 1), (1, 1)]
    assert len(evaluated) == 1  # only round 1 ran again: the untrained eval and round 0 were restored
    assert not any(p.name.startswith(".retriever-") for p in (tmp_path / "out").iterdir())


def test_trainer_uses_only_training_topics_for_mining(sample_catalog: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog(sample_catalog)
    seen: list[list[str]] = []

    def fake_mine(encoder, catalog, topic_ids, top_n, margin):
        seen.append(list(topic_ids))
        return {}

    monkeypatch.setattr(trainer_module, "mine_hard_negatives", fake_mine)
    trainer = RetrieverTrainer(catalog, RetrieverConfig(rounds=1, folds=4, fold=2, **FAST), tmp_path)
    trainer.run()
    assert seen == [trainer.train_topics] and not set(seen[0]) & set(trainer.held_out)


def test_every_pair_gets_a_negative_once_mining_has_run(tiny_catalog: Path) -> None:
    import random

    from edurank.training.retriever import examples_for

    catalog = load_catalog(tiny_catalog)
    topics = sorted(catalog.gold)
    mined = {("fr_add", "c1"): ["c3"]}  # every other pair's pool came back empty
    for seed in range(10):
        examples = examples_for(catalog, topics, mined, random.Random(seed))
        assert len(examples) == 6
        by_pair = {(e.topic, e.positive): e.negative for e in examples}
        assert by_pair[("fr_add", "c1")] == "c3"
        for example in examples:
            if example.language == "en":
                assert example.negative is not None and example.negative not in catalog.gold[example.topic]
    assert all(e.negative is None for e in examples_for(catalog, topics, None, random.Random(0)))
