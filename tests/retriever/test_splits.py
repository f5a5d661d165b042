from __future__ import annotations

from pathlib import Path

import pytest

from edurank.errors import InputError
from retriever.catalog import load_catalog
from retriever.splits import TRAIN_ONLY, split_topics, topic_folds
from tests.conftest import item, topic, write_catalog


def many_topics_catalog(tmp_path: Path) -> Path:
    topics = [topic("root", "Root")]
    content, correlations = [], []
    for i in range(40):
        language = "es" if i % 4 == 0 else "en"
        category = "source" if i < 4 else "supplemental"
        topics.append(topic(f"t{i}", f"Topic {i}", "root", language=language, category=category))
        content.append(item(f"c{i}", f"Item {i}", "text", language=language))
        correlations.append({"topic_id": f"t{i}", "content_ids": f"c{i}"})
    return write_catalog(tmp_path / "many", topics, content, correlations)


def test_folds_partition_topics_and_keep_source_in_training(tmp_path: Path) -> None:
    catalog = load_catalog(many_topics_catalog(tmp_path))
    assignment = topic_folds(catalog, 4)
    assert {assignment[f"t{i}"] for i in range(4)} == {TRAIN_ONLY}
    folds = [sorted(t for t, f in assignment.items() if f == k) for k in range(4)]
    assert sum(len(f) for f in folds) == 36 and all(len(f) == 9 for f in folds)
    for fold in folds:  # stratified: each fold holds Spanish topics in proportion (9 of 36 -> about 2)
        assert 1 <= sum(1 for t in fold if int(t[1:]) % 4 == 0) <= 3


def test_split_topics_is_disjoint_and_seeded(tmp_path: Path) -> None:
    catalog = load_catalog(many_topics_catalog(tmp_path))
    train, held_out = split_topics(catalog, 4, 1, seed=7)
    assert not set(train) & set(held_out) and len(train) + len(held_out) == 40
    assert split_topics(catalog, 4, 1, seed=7) == (train, held_out)
    assert split_topics(catalog, 4, None) == (sorted(catalog.gold), [])


def test_bad_fold_arguments(tmp_path: Path) -> None:
    catalog = load_catalog(many_topics_catalog(tmp_path))
    with pytest.raises(InputError, match="--fold 4: must be between 0 and 3"):
        split_topics(catalog, 4, 4)
    with pytest.raises(InputError, match="--folds 1"):
        topic_folds(catalog, 1)
