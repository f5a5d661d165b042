"""The bi-encoder: a sentence-transformers model plus the text builder and identity it was trained with.

A `retriever` artifact is a sentence-transformers directory (weights, tokenizer, pooling) plus the manifest;
any local ST / HF directory loads as an untrained bi-encoder. An export of one (`edurank export`, manifest
param `backend`: onnx or onnx-int8) is a retriever too and loads with ONNX Runtime: only training needs torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from edurank.artifacts import MANIFEST, Manifest
from edurank.backends.base import load_runner
from edurank.backends.onnx import TORCH
from edurank.encoders import fingerprint, model_path
from edurank.errors import InputError
from edurank.retriever.backends import Embedder, OnnxEmbedder, TorchEmbedder
from edurank.retriever.catalog import Catalog
from edurank.retriever.texts import TextBuilder, content_texts, topic_texts


@dataclass
class BiEncoder:
    """Encodes topics and content items into L2-normalised vectors (inner product = cosine)."""

    KIND = "retriever"
    embedder: Embedder
    path: Path
    fingerprint: str
    manifest: Manifest | None = None

    @classmethod
    def load(cls, path: str | Path | None, max_tokens: int | None = None, device: str = "cpu") -> BiEncoder:
        """Load the bundled MiniLM (None), a trained version or export, an artifact root or any local ST/HF dir.

        Texts are cut at the model's own token limit, so every path (service, index job, the directory loaded
        by sentence-transformers itself) gives the same vector: a trained retriever's or export's recorded
        `max_tokens`, else its configuration's (sentence-transformers' max_seq_length: 256 for the bundled
        MiniLM; for a plain HF dir, the tokenizer's model_max_length capped by max_position_embeddings).
        `max_tokens` lowers that limit; one above it is refused."""
        resolved = model_path(path)
        manifest = Manifest.verified(resolved) if (resolved / MANIFEST).is_file() else None
        stored = manifest.params if manifest is not None and manifest.kind == cls.KIND else {}
        recorded = stored.get("max_tokens")
        backend = stored.get("backend", TORCH)
        embedder: Embedder = load_runner(resolved, backend,
                                         lambda source: TorchEmbedder.load(source, recorded, device),
                                         lambda export, name: OnnxEmbedder.load(export, recorded, name))
        if max_tokens is not None:
            if max_tokens > embedder.max_tokens:
                raise InputError(f"model '{resolved}' reads at most {embedder.max_tokens} tokens per text (its own "
                                 f"limit); {max_tokens} can only lower it")
            embedder.max_tokens = max_tokens
        return cls(embedder, resolved, fingerprint(resolved), manifest)

    @property
    def max_tokens(self) -> int:
        """Tokens per text the encoder reads, special tokens included; longer texts are cut."""
        return self.embedder.max_tokens

    @property
    def backend(self) -> str:
        return self.embedder.backend

    def warmup(self) -> None:
        self.embedder.warmup()

    @property
    def model(self) -> SentenceTransformer:
        """The torch model, for training and saving; an export has none."""
        if not isinstance(self.embedder, TorchEmbedder):
            raise InputError(f"model '{self.path}': an {self.backend} export cannot be trained or re-saved; "
                             f"give the model it was exported from ({self.source or 'see its manifest'})")
        return self.embedder.model

    @property
    def source(self) -> str | None:
        """An export's source model path, as its manifest records it."""
        return self.manifest.base_model.path if self.manifest and self.manifest.base_model else None

    def save(self, directory: Path) -> None:
        """The sentence-transformers directory (weights, tokenizer, pooling); max_tokens goes in the manifest."""
        self.model.save(str(directory))

    @property
    def dimension(self) -> int:
        return self.embedder.dimension

    @cached_property
    def builder(self) -> TextBuilder:
        """Texts cut to `max_tokens`, counted by a private copy of the tokenizer: a fast tokenizer keeps its
        truncation and padding settings as state, which the builder's calls (none) and the model's (both)
        would switch under each other when the service runs them in two threads at once."""
        return TextBuilder(copy.deepcopy(self.embedder.tokenizer), self.max_tokens)

    def embed(self, texts: list[str]) -> np.ndarray:
        """One batch, as the service runs it: tokenise, then the backend's forward pass and pooling."""
        return self.embedder.embed(self.embedder.features(texts))

    def encode(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Many texts in batches of similar length (longest first), so padding costs little on a CPU; the
        progress bar counts items. Batch 32: larger batches measured slower on 2 cores (bench/README.md)."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        with tqdm(total=len(texts), desc="embedding", unit="item", disable=not progress) as bar:
            for start in range(0, len(texts), batch_size):
                rows = order[start:start + batch_size]
                vectors[rows] = self.embed([texts[i] for i in rows])
                bar.update(len(rows))
        return vectors

    def encode_topics(self, catalog: Catalog, topics: pl.DataFrame | None = None, progress: bool = False,
                      batch_size: int = 32) -> np.ndarray:
        return self.encode(topic_texts(catalog, self.builder, topics), batch_size, progress)

    def encode_parts(self, rows: Sequence[Sequence[str | None]],
                     embed: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
        """Each row's parts embedded alone (the ranker's topic_parts): (rows, parts, dimension), NaN where a
        part is empty; `embed` (ready texts -> vectors) defaults to `encode`'s length-sorted batches."""
        width = max((len(row) for row in rows), default=0)
        vectors = np.full((len(rows), width, self.dimension), np.nan, dtype=np.float32)
        where = [(i, j) for i, row in enumerate(rows) for j, part in enumerate(row) if part and part.strip()]
        if where:
            texts = self.builder.build([(rows[i][j],) for i, j in where])
            first, second = zip(*where, strict=True)
            vectors[list(first), list(second)] = (embed or self.encode)(texts)
        return vectors

    def encode_content(self, catalog: Catalog, progress: bool = False, batch_size: int = 32) -> np.ndarray:
        return self.encode(content_texts(catalog, self.builder), batch_size, progress)
