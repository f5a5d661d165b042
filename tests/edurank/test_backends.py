"""One backend protocol for every served model: each family's torch and ONNX runners satisfy `Backend`, the
backend is picked in one place, and a warm-up runs on either backend without changing what is served."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edurank.backends.base import BACKENDS, Backend, backend_of, load_runner, warm_up
from edurank.backends.config import ONNX, TORCH
from edurank.backends.onnx import ONNX_FILE, export_graph, sample_features
from edurank.backends.runners import OnnxRunner, warmup_features
from edurank.classifier.model import Ensemble, OnnxEnsemble
from edurank.errors import InputError
from edurank.essays.backends import OnnxLayerMeans, OnnxWindowScorer, TorchLayerMeans, TorchWindowScorer
from edurank.reranker.cross_encoder.backends import PAIR_INPUTS, OnnxPairRunner, TorchPairRunner
from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.retriever.backends import OnnxEmbedder, TorchEmbedder

# every served family's runners, torch's and ONNX Runtime's, with the method the family calls on them
RUNNERS = {
    "retriever": (TorchEmbedder, OnnxEmbedder, "embed"),
    "cross-encoder": (TorchPairRunner, OnnxPairRunner, "logits"),
    "essays fast path": (TorchLayerMeans, OnnxLayerMeans, "__call__"),
    "essays fold": (TorchWindowScorer, OnnxWindowScorer, "scores"),
    "classifier": (Ensemble, OnnxEnsemble, "member_logits"),
}


@pytest.mark.parametrize("family", sorted(RUNNERS))
def test_every_family_runs_the_same_protocol_on_both_backends(family: str) -> None:
    torch_runner, onnx_runner, forward = RUNNERS[family]
    assert issubclass(onnx_runner, OnnxRunner)  # its session, backend, `open` and warm-up
    for runner in (torch_runner, onnx_runner):
        fields = {f.name: f for f in dataclasses.fields(runner)}
        assert "backend" in fields and callable(runner.warmup) and callable(getattr(runner, forward)), runner
    assert dataclasses.fields(torch_runner)[-1].default == TORCH  # a torch runner says so itself


def test_the_backend_is_picked_in_one_place(tmp_path: Path) -> None:
    picked = [load_runner(tmp_path, backend, lambda d: (TORCH, d), lambda d, b: (b, d)) for backend in BACKENDS]
    assert picked == [(backend, tmp_path) for backend in BACKENDS]
    with pytest.raises(InputError, match="backend 'tensorrt' is none of torch, onnx, onnx-int8"):
        load_runner(tmp_path, "tensorrt", lambda d: d, lambda d, b: d)
    assert backend_of(None) == TORCH and backend_of(None, ONNX) == ONNX


@pytest.fixture(scope="module")
def small_reranker() -> Reranker:
    """A fresh cross-encoder on the bundled MiniLM cut to one layer: an export of it takes seconds."""
    reranker = Reranker.load(None, PairFormat(8, 16))
    encoder = reranker.model.encoder
    encoder.encoder.layer = encoder.encoder.layer[:1]
    encoder.config.num_hidden_layers = 1
    return reranker


def test_a_torch_runner_warms_up_and_keeps_its_mode(small_reranker: Reranker) -> None:
    runner = small_reranker.runner
    assert isinstance(runner, TorchPairRunner) and isinstance(runner, Backend) and isinstance(small_reranker, Backend)
    runner.scorer.train()
    try:
        runner.warmup()  # served in eval mode without gradients, then back in training
        assert runner.scorer.training
    finally:
        runner.scorer.eval()
    assert warm_up(small_reranker, None) >= 0


def test_an_onnx_runner_warms_up_and_gives_torchs_logits(small_reranker: Reranker, tmp_path: Path) -> None:
    export_graph(small_reranker.model, sample_features(small_reranker.tokenizer, pairs=True), tmp_path / ONNX_FILE,
                 ONNX, call=lambda scorer, **inputs: scorer(**inputs), output_axes={0: "batch"})
    runner = load_runner(tmp_path, ONNX, lambda d: pytest.fail("torch picked"), OnnxPairRunner.open)
    assert isinstance(runner, Backend) and runner.backend == ONNX
    runner.warmup()
    features = small_reranker.tokenize([("Fractions", "Adding fractions"), ("Cells", "Photosynthesis in plants")])
    assert np.abs(runner.logits(features) - small_reranker.runner.logits(features)).max() < 1e-3
    warmed = warmup_features(PAIR_INPUTS)
    assert runner.logits(warmed).shape == (len(warmed["input_ids"]),) and warmed["token_type_ids"].any()
    assert torch.equal(warmed["attention_mask"], torch.ones_like(warmed["input_ids"]))
