"""What the essay scorer runs, per backend: the fast path's frozen encoder (`LayerMeans`: windows -> their
layer means) and each fine-tuned fold (`WindowScorer`: windows -> their essays' trait scores).

The torch runners hold the modules training builds and saves; the ONNX runners an export's graphs (the layer
means, and each fold's per-window scores, pooled here as the torch regressor pools its window vectors: its head
is linear). `FeatureExtractor.load` and `EssayModel.load` pick one with `edurank.backends.base.load_runner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from edurank.backends.base import Backend
from edurank.backends.config import TORCH
from edurank.backends.runners import OnnxRunner, serving, warmup_features
from edurank.encoders import load_hf_encoder, load_tokenizer
from edurank.errors import InputError
from edurank.essays.features import layer_means
from edurank.essays.windows import pool_windows

if TYPE_CHECKING:
    from edurank.essays.model import EssayRegressor

WINDOW_INPUTS = ("input_ids", "attention_mask")


class LayerMeans(Backend, Protocol):
    """One backend of the fast path's frozen encoder, with the tokenizer its windows are cut by."""

    tokenizer: PreTrainedTokenizerBase

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(windows, len(layers) x hidden) layer means of a batch of windows (`WINDOW_INPUTS`), on the CPU."""
        ...


@dataclass
class TorchLayerMeans:
    """The frozen HF encoder (eval mode) and the hidden states averaged into the features."""

    encoder: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    layers: tuple[int, ...]
    backend: str = TORCH

    @classmethod
    def load(cls, path: str | Path | None, layers: Sequence[int]) -> TorchLayerMeans:
        """Any base model argument (None: the bundled MiniLM; an artifact root: its newest version)."""
        encoder, tokenizer = load_hf_encoder(path)
        depth = encoder.config.num_hidden_layers
        if any(not -depth - 1 <= layer <= depth for layer in layers):
            raise InputError(f"layers {list(layers)}: the encoder has hidden states 0..{depth}")
        return cls(encoder.eval(), tokenizer, tuple(layers))

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.encoder.device
        return layer_means(self.encoder, {k: v.to(device) for k, v in features.items()}, self.layers).cpu()

    def warmup(self) -> None:
        with torch.inference_mode():
            self(warmup_features(WINDOW_INPUTS))


@dataclass
class OnnxLayerMeans(OnnxRunner):
    """An export's graph of windows -> their layer means (the layers are baked in), with the tokenizer."""

    tokenizer: PreTrainedTokenizerBase

    @classmethod
    def load(cls, directory: Path, backend: str) -> OnnxLayerMeans:
        return cls.open(directory, backend, tokenizer=load_tokenizer(directory))

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(self.session(features))


class WindowScorer(Backend, Protocol):
    """One backend of a fine-tuned essay regressor."""

    def scores(self, features: dict[str, torch.Tensor], essay: torch.Tensor, essays: int) -> torch.Tensor:
        """(essays, 6) raw scores of the essays whose windows `features` holds (`WINDOW_INPUTS`; `essay`: each
        window's essay, 0..essays-1), served: in eval mode, without gradients."""
        ...


@dataclass
class TorchWindowScorer:
    """The essay regressor itself, on any device: what training fine-tunes (`forward`) and serves (`scores`)."""

    regressor: EssayRegressor
    backend: str = TORCH

    def forward(self, features: dict[str, torch.Tensor], essay: torch.Tensor, essays: int) -> torch.Tensor:
        """The scores by the regressor as it is: training's forward pass (its mode, with gradients)."""
        device = next(self.regressor.parameters()).device
        return self.regressor(features["input_ids"].to(device), features["attention_mask"].to(device),
                              essay.to(device), essays)

    def scores(self, features: dict[str, torch.Tensor], essay: torch.Tensor, essays: int) -> torch.Tensor:
        with serving(self.regressor):
            return self.forward(features, essay, essays)

    def warmup(self) -> None:
        features = warmup_features(WINDOW_INPUTS)
        self.scores(features, torch.zeros(len(features["input_ids"]), dtype=torch.long), 1)


@dataclass
class OnnxWindowScorer(OnnxRunner):
    """An export's graph of windows -> each window's scores (`EssayRegressor.window_scores`)."""

    def scores(self, features: dict[str, torch.Tensor], essay: torch.Tensor, essays: int) -> torch.Tensor:
        return pool_windows(torch.from_numpy(self.session(features)), features["attention_mask"], essay, essays)
