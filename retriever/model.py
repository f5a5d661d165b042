"""The bi-encoder: a sentence-transformers model plus the text builder and identity it was trained with.

A `retriever` artifact is a sentence-transformers directory (weights, tokenizer, pooling) plus the manifest;
any local ST / HF directory loads as an untrained bi-encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sentence_transformers import SentenceTransformer

from edurank.artifacts import MANIFEST, Manifest
from edurank.encoders import fingerprint, load_sentence_encoder, model_path
from retriever.catalog import Catalog
from retriever.texts import TextBuilder, content_texts, topic_texts

DEFAULT_MAX_TOKENS = 128


@dataclass
class BiEncoder:
    """Encodes topics and content items into L2-normalised vectors (inner product = cosine)."""

    KIND = "retriever"
    model: SentenceTransformer
    path: Path
    fingerprint: str
    max_tokens: int = DEFAULT_MAX_TOKENS
    manifest: Manifest | None = None

    @classmethod
    def load(cls, path: str | Path | None, max_tokens: int | None = None, device: str = "cpu") -> BiEncoder:
        """Load the bundled MiniLM (None), a trained version, an artifact root or any local ST/HF dir."""
        resolved = model_path(path)
        manifest = Manifest.read(resolved) if (resolved / MANIFEST).is_file() else None
        stored = manifest.params if manifest is not None and manifest.kind == cls.KIND else {}
        tokens = max_tokens or int(stored.get("max_tokens", DEFAULT_MAX_TOKENS))
        model = load_sentence_encoder(resolved, max_seq_length=tokens, device=device)
        return cls(model, resolved, fingerprint(resolved), tokens, manifest)

    def save(self, directory: Path) -> None:
        """The sentence-transformers directory (weights, tokenizer, pooling); max_tokens goes in the manifest."""
        self.model.save(str(directory))

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def builder(self) -> TextBuilder:
        return TextBuilder(self.model.tokenizer, self.max_tokens)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=batch_size, show_progress_bar=progress,
                                    convert_to_numpy=True, normalize_embeddings=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_topics(self, catalog: Catalog, topics: pl.DataFrame | None = None, progress: bool = False,
                      batch_size: int = 64) -> np.ndarray:
        return self.encode(topic_texts(catalog, self.builder, topics), batch_size, progress)

    def encode_content(self, catalog: Catalog, progress: bool = False, batch_size: int = 64) -> np.ndarray:
        return self.encode(content_texts(catalog, self.builder), batch_size, progress)
