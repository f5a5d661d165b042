"""FAISS content indexes: build (exact, IVF or HNSW, inner product), save/load with an id map, search with
language and kind filters. Loading checks the index was built by the encoder that will query it.

An index may also hold the catalog's topic vectors (TopicBank) and a companion: a second encoder's vectors of
the same rows, whose cosine the ranker reads beside the retriever's (the bundled model next to a fine-tuned
one: what fine-tuning forgot, it may still know)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import polars as pl

from edurank.artifacts import Manifest, ModelRef
from edurank.errors import ArtifactMismatchError, InputError
from edurank.retriever.config import INDEX_TYPES
from edurank.retriever.lexical import LexicalIndex
from edurank.retriever.topic_bank import TopicBank

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
TOPICS_FILE = "topics.npy"  # the catalog's topic vectors, row i = topic_ids.parquet row i
TOPIC_IDS_FILE = "topic_ids.parquet"
COMPANION_FILE = "companion.npy"  # the companion encoder's vectors, row i = index row i
COMPANION_MODEL_FILE = "companion.json"  # which encoder: its path and fingerprint


def build_faiss(vectors: np.ndarray, index_type: str = "flat", nlist: int | None = None,
                hnsw_m: int = 32) -> faiss.Index:
    """Inner-product index over normalised vectors. `flat` is exact; `ivf` and `hnsw` trade a little
    recall for sub-linear search on catalogs in the millions."""
    count, dimension = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif index_type == "ivf":
        lists = nlist or max(1, min(int(4 * np.sqrt(count)), count // 39 or 1))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(lists, max(8, lists // 16))
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        index.hnsw.efSearch = 128
    else:
        raise InputError(f"index type '{index_type}': choose one of {', '.join(INDEX_TYPES)}")
    index.add(vectors)
    return index


def load_topic_bank(directory: Path, dimension: int) -> TopicBank | None:
    if not (directory / TOPICS_FILE).is_file():
        return None
    vectors = np.load(directory / TOPICS_FILE, allow_pickle=False)
    ids = pl.read_parquet(directory / TOPIC_IDS_FILE)["id"].to_list()
    if vectors.ndim != 2 or vectors.shape != (len(ids), dimension):
        raise ArtifactMismatchError(f"{directory}: {TOPICS_FILE} holds {vectors.shape} vectors for {len(ids)} topics "
                                    f"of dimension {dimension}; rebuild it with `edurank index`")
    return TopicBank(vectors, ids)


@dataclass(frozen=True)
class Appended:
    """Rows appended over time, each snapshot seeing its own prefix `buffer[:count]`: appending writes past
    every earlier snapshot's prefix (into spare capacity, or a buffer twice as large), so the writer adds k
    rows in O(k) amortised and readers of older snapshots never see them. One writer appends, always to the
    newest snapshot."""

    buffer: np.ndarray
    count: int = 0

    @classmethod
    def empty(cls, dimension: int) -> Appended:
        return cls(np.empty((0, dimension), dtype=np.float32))

    @property
    def rows(self) -> np.ndarray:
        return self.buffer[:self.count]

    def __len__(self) -> int:
        return self.count

    def gather(self, rows: np.ndarray, published: int, take: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The vectors of the given rows: those below `published` read by `take`, the others from this tail
        (row `published` + i is its row i)."""
        rows = np.asarray(rows, dtype=np.int64)
        found = np.empty((len(rows), self.buffer.shape[1]), dtype=np.float32)
        base = rows < published
        if base.any():
            found[base] = take(rows[base])
        if (~base).any():
            found[~base] = self.rows[rows[~base] - published]
        return found

    def plus(self, rows: np.ndarray) -> Appended:
        need = self.count + len(rows)
        buffer = self.buffer
        if need > len(buffer):
            buffer = np.empty((max(need, 2 * len(buffer), 64), self.buffer.shape[1]), dtype=np.float32)
            buffer[:self.count] = self.buffer[:self.count]
        buffer[self.count:need] = rows
        return Appended(buffer, need)


@dataclass
class Companion:
    """A second encoder's vectors of the index's rows, scored exactly for the candidates the index found."""

    vectors: np.ndarray
    model: ModelRef

    def save(self, directory: Path) -> None:
        np.save(directory / COMPANION_FILE, self.vectors)
        (directory / COMPANION_MODEL_FILE).write_text(json.dumps(asdict(self.model)))

    @classmethod
    def load(cls, directory: Path, rows: int) -> Companion | None:
        if not (directory / COMPANION_FILE).is_file():
            return None
        vectors = np.load(directory / COMPANION_FILE, allow_pickle=False)
        if vectors.ndim != 2 or len(vectors) != rows or not (directory / COMPANION_MODEL_FILE).is_file():
            raise ArtifactMismatchError(f"{directory}: {COMPANION_FILE} holds {vectors.shape} vectors for {rows} "
                                        f"items, or {COMPANION_MODEL_FILE} is missing; rebuild it with `edurank index`")
        return cls(vectors, ModelRef(**json.loads((directory / COMPANION_MODEL_FILE).read_text())))

    tail: Appended | None = None  # the live catalog's rows, after `vectors`' (retriever/live.py)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of the given rows, of `vectors` or the tail."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.tail is None:
            return self.vectors[rows]
        return self.tail.gather(rows, len(self.vectors), lambda base: self.vectors[base])

    def with_rows(self, vectors: np.ndarray) -> Companion:
        """A copy that also holds these rows' vectors, after the existing ones."""
        tail = self.tail or Appended.empty(self.vectors.shape[1])
        return Companion(self.vectors, self.model, tail.plus(vectors))

    def scores(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The companion cosine of one query's vector with the given rows."""
        return (self.rows(rows) @ query).astype(np.float32)


@dataclass
class ContentIndex:
    """A FAISS index whose row i is the content item `items[i]` (id, language, kind, title), and optionally
    the lexical index over the same rows, the catalog's topic vectors and a companion's vectors. An `index`
    artifact holds index.faiss, ids.parquet and, where built, lexical/, topics.npy with topic_ids.parquet,
    companion.npy with companion.json; its manifest's base model is the encoder that embedded it."""

    KIND = "index"
    index: faiss.Index
    items: pl.DataFrame
    manifest: Manifest | None = None  # None for an index built in memory
    lexical: LexicalIndex | None = None  # None: dense candidates only
    topics: TopicBank | None = None  # None: no reverse or neighbours features
    companion: Companion | None = None  # None: no companion features

    @property
    def ids(self) -> list[str]:
        return self.items["id"].to_list()

    def save(self, directory: Path) -> None:
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        self.items.write_parquet(directory / IDS_FILE)
        if self.lexical is not None:
            self.lexical.save(directory)
        if self.topics is not None:
            np.save(directory / TOPICS_FILE, self.topics.vectors)
            pl.DataFrame({"id": self.topics.ids}).write_parquet(directory / TOPIC_IDS_FILE)
        if self.companion is not None:
            self.companion.save(directory)

    @classmethod
    def load(cls, directory: Path, model_fingerprint: str | None = None) -> ContentIndex:
        """Load an index; with `model_fingerprint`, refuse one built by another encoder."""
        manifest = Manifest.verified(directory)
        if manifest.kind != cls.KIND or manifest.base_model is None:
            raise ArtifactMismatchError(f"{directory}: a '{manifest.kind}' artifact, not an index")
        built_with = manifest.base_model
        if model_fingerprint is not None and built_with.fingerprint != model_fingerprint:
            raise ArtifactMismatchError(
                f"index {directory} was built with model {built_with.path} (fingerprint "
                f"{built_with.fingerprint[:12]}), not the given model (fingerprint {model_fingerprint[:12]}); "
                "rebuild it with `edurank index`")
        index = faiss.read_index(str(directory / INDEX_FILE))
        if isinstance(index, faiss.IndexIVF):
            index.make_direct_map()  # now, not lazily in vectors_of while other threads search
        items = pl.read_parquet(directory / IDS_FILE)
        if index.ntotal != len(items):
            raise ArtifactMismatchError(f"{directory}: the vector index has {index.ntotal} rows, the id map "
                                        f"{len(items)}; rebuild it with `edurank index`")
        lexical = LexicalIndex.load(directory)
        if lexical is not None and lexical.rows != len(items):
            raise ArtifactMismatchError(f"{directory}: the lexical index has {lexical.rows} rows, the id "
                                        f"map {len(items)}; rebuild it with `edurank index`")
        return cls(index, items, manifest, lexical, load_topic_bank(directory, index.d),
                   Companion.load(directory, len(items)))

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of the given rows (to score candidates another source found)."""
        if isinstance(self.index, faiss.IndexIVF) and not self.index.direct_map.type:
            self.index.make_direct_map()
        if not len(rows):
            return np.empty((0, self.index.d), dtype=np.float32)
        return self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64))

    def excluded(self) -> np.ndarray | None:
        """Rows no search may return (the live catalog's replaced and deleted ones), as a mask; None: none."""
        return None

    def allowed_rows(self, languages: list[str] | None = None, kinds: list[str] | None = None,
                     channels: list[str] | None = None, exclude_channels: list[str] | None = None) \
            -> np.ndarray | None:
        """Row numbers passing the filters, or None when every row does. Rows without a channel pass an
        exclusion and fail a restriction."""
        excluded = self.excluded()
        if not (languages or kinds or channels or exclude_channels) and excluded is None:
            return None
        mask = np.ones(len(self.items), dtype=bool) if excluded is None else ~excluded
        if languages:
            mask &= self.items["language"].is_in(languages).to_numpy()
        if kinds:
            mask &= self.items["kind"].is_in(kinds).fill_null(False).to_numpy()
        if channels or exclude_channels:
            channel = (self.items["channel_id"] if "channel_id" in self.items.columns
                       else pl.Series([None] * len(self.items), dtype=pl.String))
            if channels:
                mask &= channel.is_in(channels).fill_null(False).to_numpy()
            if exclude_channels:
                mask &= ~channel.is_in(exclude_channels).fill_null(False).to_numpy()
        return np.flatnonzero(mask).astype(np.int64)

    def search(self, queries: np.ndarray, k: int, languages: list[str] | None = None,
               kinds: list[str] | None = None, channels: list[str] | None = None,
               exclude_channels: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) per query; rows are -1 where fewer than k items pass the filters."""
        return self.search_rows(queries, min(k, len(self.items)),
                                self.allowed_rows(languages, kinds, channels, exclude_channels))

    def search_rows(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The FAISS index's top-k among `allowed` rows (None: all)."""
        if allowed is None:
            return self.index.search(queries, k)
        selector = faiss.IDSelectorBatch(allowed)
        params: faiss.SearchParameters
        if isinstance(self.index, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
        elif isinstance(self.index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=self.index.hnsw.efSearch)
        else:
            params = faiss.SearchParameters(sel=selector)
        return self.index.search(queries, k, params=params)
