"""The lexical half of stage 1: character n-gram TF-IDF over the content, searched per language.

Dense retrieval misses items that share rare surface forms with the topic (a formula, a unit, a term the
encoder never learnt); character n-grams catch them and need no training. The vectoriser is scikit-learn's
(`char_wb` n-grams, sublinear tf, L2-normalised rows), so a cosine is one sparse dot product. It is saved
as plain arrays (vocabulary JSON, idf and the content matrix as .npy/.npz), never pickled, so loading an
artifact runs no code from it. The indexing job builds it next to the FAISS index, in the same artifact.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from edurank.errors import ArtifactMismatchError

LEXICAL_DIR = "lexical"
MAX_CHARS = 2000  # of an item's text: n-grams past this add little and cost memory
SEPARATOR = " | "


def lexical_text(parts: Sequence[str | None]) -> str:
    """A row's parts joined, lower-cased by the vectoriser, cut to MAX_CHARS."""
    return SEPARATOR.join(p for p in parts if p)[:MAX_CHARS]


@dataclass
class LexicalIndex:
    """Row i of `matrix` is content row i (the FAISS index's row i); `languages[i]` its language. Rows added
    while the service runs (the live catalog) are kept in `tail`, after the matrix's, in the same fitted
    vocabulary, so adding one never copies the matrix; compaction folds them in (`select`)."""

    vectorizer: TfidfVectorizer
    matrix: sp.csr_matrix
    languages: np.ndarray
    blocks: tuple[sp.csr_matrix, ...] = ()  # the tail as added, combined on first use (replaying a journal
    block_languages: tuple[np.ndarray, ...] = ()  # adds thousands of blocks and searches none of them)
    inverted: sp.csr_matrix | None = None  # n-gram -> rows: `matrix` transposed once, kept by copies

    def __post_init__(self) -> None:
        if self.inverted is None:  # a query's product then reads its own n-grams' rows, not the whole matrix
            self.inverted = self.matrix.T.tocsr()

    @cached_property
    def tail(self) -> sp.csr_matrix | None:
        return (self.blocks[0] if len(self.blocks) == 1 else sp.vstack(self.blocks).tocsr()) if self.blocks else None

    @classmethod
    def build(cls, texts: Sequence[str], languages: Sequence[str], ngrams: tuple[int, int] = (3, 5),
              min_df: int = 1, max_features: int | None = 500_000) -> LexicalIndex:
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngrams, min_df=min_df, sublinear_tf=True,
                                     max_features=max_features, dtype=np.float32)
        matrix = vectorizer.fit_transform(list(texts)).tocsr()
        return cls(vectorizer, matrix, np.asarray(languages, dtype=object))

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.vectorizer.transform(list(texts)).tocsr()

    @property
    def rows(self) -> int:
        return self.matrix.shape[0] + sum(block.shape[0] for block in self.blocks)

    def with_rows(self, texts: Sequence[str], languages: Sequence[str]) -> LexicalIndex:
        """A copy that also holds these rows, after the existing ones (the vocabulary and idf stay fixed); a
        tail this copy already combined is reused as one block."""
        combined = self.__dict__.get("tail")
        blocks = (combined,) if combined is not None else self.blocks
        return dataclasses.replace(self, blocks=(*blocks, self.transform(texts)),
                                   block_languages=(*self.block_languages, np.asarray(languages, dtype=object)))

    def select(self, rows: np.ndarray) -> LexicalIndex:
        """The given rows only, in that order, in one matrix (compaction)."""
        whole = self.matrix if self.tail is None else sp.vstack([self.matrix, self.tail]).tocsr()
        languages = np.concatenate([self.languages, *self.block_languages])
        return LexicalIndex(self.vectorizer, whole[rows], languages[rows])

    def similarities(self, queries: sp.csr_matrix, rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per query, the cosine to each of its given content rows."""
        return [self.cosines(queries[i], np.asarray(r, dtype=np.int64)) for i, r in enumerate(rows)]

    def cosines(self, query: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        """One query's cosine to each given row, of the matrix or the tail."""
        found = np.zeros(len(rows), dtype=np.float32)
        size = self.matrix.shape[0]
        for part, offset, select in ((self.matrix, 0, rows < size), (self.tail, size, rows >= size)):
            if part is not None and select.any():
                found[select] = np.asarray(part[rows[select] - offset].dot(query.T).toarray()).ravel()
        return found

    def search(self, queries: sp.csr_matrix, k: int, allowed: Sequence[np.ndarray | None]) \
            -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (cosines, rows) of its top-k content rows among `allowed` (None: all), best first;
        rows with no n-gram in common are left out."""
        scores = (queries @ self.inverted).tocsr()
        if self.tail is not None:
            scores = sp.hstack([scores, queries @ self.tail.T]).tocsr()
        found = []
        for i in range(queries.shape[0]):
            row = scores.getrow(i)
            columns, values = row.indices, row.data
            if allowed[i] is not None:
                mask = np.zeros(scores.shape[1], dtype=bool)  # O(rows), where isin would sort both
                mask[allowed[i]] = True
                keep = mask[columns]
                columns, values = columns[keep], values[keep]
            top = np.argsort(-values, kind="stable")[:k] if len(values) <= 4 * k else \
                np.argpartition(-values, k)[:k]
            top = top[np.argsort(-values[top], kind="stable")]
            found.append((values[top].astype(np.float32), columns[top].astype(np.int64)))
        return found

    def save(self, directory: Path) -> None:
        if self.blocks:
            raise ValueError("a lexical index with live rows is saved once compacted (select)")
        target = directory / LEXICAL_DIR
        target.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(column) for term, column in self.vectorizer.vocabulary_.items()}
        settings = {"ngram_range": list(self.vectorizer.ngram_range), "analyzer": self.vectorizer.analyzer,
                    "sublinear_tf": self.vectorizer.sublinear_tf, "rows": self.matrix.shape[0]}
        (target / "vectorizer.json").write_text(json.dumps({"settings": settings, "vocabulary": vocabulary}))
        np.save(target / "idf.npy", self.vectorizer.idf_.astype(np.float32))
        sp.save_npz(target / "matrix.npz", self.matrix)
        pl.DataFrame({"language": self.languages.tolist()}).write_parquet(target / "languages.parquet")

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex | None:
        """The lexical index saved in an index artifact, or None for an index built without one."""
        source = directory / LEXICAL_DIR
        if not source.is_dir():
            return None
        stored = json.loads((source / "vectorizer.json").read_text())
        settings = stored["settings"]
        vectorizer = TfidfVectorizer(analyzer=settings["analyzer"], ngram_range=tuple(settings["ngram_range"]),
                                     sublinear_tf=settings["sublinear_tf"], dtype=np.float32)
        vectorizer.vocabulary_ = stored["vocabulary"]
        vectorizer.idf_ = np.load(source / "idf.npy", allow_pickle=False)
        matrix = sp.load_npz(source / "matrix.npz").tocsr()
        languages = pl.read_parquet(source / "languages.parquet")["language"].to_numpy().astype(object)
        if not matrix.shape[0] == len(languages) == settings["rows"] or matrix.shape[1] != len(vectorizer.idf_):
            raise ArtifactMismatchError(f"{source}: the lexical index's files disagree on its size; rebuild the "
                                        "index with `edurank index`")
        return cls(vectorizer, matrix, languages)
