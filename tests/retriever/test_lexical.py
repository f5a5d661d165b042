from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edurank.errors import ArtifactMismatchError
from edurank.retriever.lexical import LexicalIndex

TEXTS = ["Adding fractions with unlike denominators", "Area of a triangle: half base times height",
         "Photosynthesis in green plants", "Fracciones equivalentes", "Multiplying fractions by whole numbers"]
LANGUAGES = ["en", "en", "en", "es", "en"]


def test_search_finds_shared_character_ngrams_best_first() -> None:
    index = LexicalIndex.build(TEXTS, LANGUAGES)
    scores, rows = index.search(index.transform(["fractions"]), 3, [None])[0]
    assert set(rows[:2]) == {0, 4} and np.all(np.diff(scores) <= 0)
    only_spanish = index.search(index.transform(["fracciones"]), 3, [np.array([3])])[0]
    assert only_spanish[1].tolist() == [3]


def test_similarities_agree_with_search_and_survive_a_save(tmp_path: Path) -> None:
    index = LexicalIndex.build(TEXTS, LANGUAGES)
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    assert loaded is not None and loaded.languages.tolist() == LANGUAGES
    query = ["area of a triangle"]
    scores, rows = index.search(index.transform(query), 5, [None])[0]
    again = loaded.similarities(loaded.transform(query), [rows])[0]
    assert np.allclose(scores, again, atol=1e-6)
    assert LexicalIndex.load(tmp_path / "elsewhere") is None  # an index built without one


def test_files_that_disagree_are_refused(tmp_path: Path) -> None:
    LexicalIndex.build(TEXTS, LANGUAGES).save(tmp_path)
    LexicalIndex.build(TEXTS[:3], LANGUAGES[:3]).save(tmp_path / "other")
    (tmp_path / "other" / "lexical" / "matrix.npz").replace(tmp_path / "lexical" / "matrix.npz")
    with pytest.raises(ArtifactMismatchError, match="rebuild"):
        LexicalIndex.load(tmp_path)
