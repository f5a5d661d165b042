"""What a bi-encoder runs, per backend: its tokenizer, and one batch of features -> L2-normalised vectors.

`TorchEmbedder` is the sentence-transformers model itself; `OnnxEmbedder` runs an exported trunk in ONNX
Runtime and applies the same sentence-transformers pooling module to its hidden states, so both backends
pool (mean, CLS, ...) exactly alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from sentence_transformers.util import batch_to_device
from transformers import PreTrainedTokenizerBase

from edurank.backends.base import Backend
from edurank.backends.config import TORCH
from edurank.backends.onnx import ONNX_FILE, export_trunk
from edurank.backends.runners import OnnxRunner, serving
from edurank.encoders import load_sentence_encoder, load_tokenizer
from edurank.errors import InputError

POOLING_FILE = "pooling.json"


class Embedder(Backend, Protocol):
    """One backend of a bi-encoder: `features` tokenises (the service times it apart), `embed` runs the model;
    `max_tokens` is where `features` cuts a text (special tokens included)."""

    max_tokens: int

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase: ...

    @property
    def pooling(self) -> Pooling: ...

    @property
    def dimension(self) -> int: ...

    def features(self, texts: list[str]) -> dict[str, Any]: ...

    def embed(self, features: dict[str, Any]) -> np.ndarray: ...


WARMUP_TEXTS = ["a text to warm up on", "and a second one"]  # the torch embedder's (its tokenizer's inputs)


def normalised(vectors: torch.Tensor) -> np.ndarray:
    """Unit-length float32 rows, contiguous for FAISS."""
    return np.ascontiguousarray(torch.nn.functional.normalize(vectors, dim=-1).numpy(), dtype=np.float32)


@dataclass
class TorchEmbedder:
    """The sentence-transformers model itself (any device); what training fine-tunes."""

    model: SentenceTransformer
    backend: str = TORCH

    @classmethod
    def load(cls, path: Path, max_tokens: int | None, device: str = "cpu") -> TorchEmbedder:
        """The model at `path`, cutting texts at `max_tokens` (None: its own max_seq_length)."""
        return cls(load_sentence_encoder(path, max_seq_length=max_tokens, device=device))

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @max_tokens.setter
    def max_tokens(self, value: int) -> None:
        self.model.max_seq_length = value

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.model.tokenizer

    @property
    def pooling(self) -> Pooling:
        return next(module for module in self.model if isinstance(module, Pooling))

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def features(self, texts: list[str]) -> dict[str, Any]:
        return dict(self.model.preprocess(texts))

    def embed(self, features: dict[str, Any]) -> np.ndarray:
        with serving(self.model):  # a model under training embeds in eval mode (no dropout), then goes back
            vectors = self.model(batch_to_device(features, self.model.device))["sentence_embedding"]
            return normalised(vectors.float().cpu())

    def warmup(self) -> None:
        self.embed(self.features(WARMUP_TEXTS))


@dataclass
class OnnxEmbedder(OnnxRunner):
    """An exported trunk in ONNX Runtime, with its tokenizer and the source's sentence-transformers pooling."""

    tokenizer: PreTrainedTokenizerBase
    pooling: Pooling
    max_tokens: int

    @property
    def dimension(self) -> int:
        return int(self.pooling.get_embedding_dimension())

    def features(self, texts: list[str]) -> dict[str, Any]:
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                   return_tensors="np"))

    def embed(self, features: dict[str, Any]) -> np.ndarray:
        hidden = torch.from_numpy(self.session(features))
        with torch.inference_mode():
            pooled = self.pooling({"token_embeddings": hidden,
                                   "attention_mask": torch.from_numpy(features["attention_mask"])})
        return normalised(pooled["sentence_embedding"])

    @classmethod
    def load(cls, directory: Path, max_tokens: int | None, backend: str) -> OnnxEmbedder:
        """An export directory: model.onnx, the tokenizer, and pooling.json (the source's pooling config).
        `max_tokens` None: the saved tokenizer's model_max_length, which is the source's max_seq_length."""
        pooling = Pooling(**json.loads((directory / POOLING_FILE).read_text()))
        tokenizer = load_tokenizer(directory)
        return cls.open(directory, backend, tokenizer=tokenizer, pooling=pooling,
                        max_tokens=max_tokens or int(tokenizer.model_max_length))


def export_embedder(model: SentenceTransformer, directory: Path, backend: str) -> None:
    """Write what `OnnxEmbedder.load` reads; refused for a pipeline other than transformer -> pooling ->
    (normalise), whose extra modules (a Dense projection, ...) the export would drop."""
    modules = list(model)
    if not (isinstance(modules[0], Transformer) and len(modules) > 1 and isinstance(modules[1], Pooling)
            and all(isinstance(m, Normalize) for m in modules[2:])):
        raise InputError(f"cannot export a {' -> '.join(type(m).__name__ for m in modules)} model: only "
                         "Transformer -> Pooling (-> Normalize) pipelines are supported")
    transformer: Transformer = modules[0]
    export_trunk(transformer.auto_model, model.tokenizer, directory / ONNX_FILE, backend)
    model.tokenizer.save_pretrained(str(directory))
    transformer.auto_model.config.save_pretrained(str(directory))
    (directory / POOLING_FILE).write_text(json.dumps(modules[1].get_config_dict()))
