"""Cross-validation folds over a catalog's topics: group = topic (its pairs never straddle folds), stratified
by language; topics of category `source` always stay in training. Training and evaluation cut the same folds,
and a trained model's manifest says which topics it saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from edurank.artifacts import MANIFEST, Manifest
from edurank.errors import InputError
from retriever.catalog import Catalog

TRAIN_ONLY = -1


def topic_folds(catalog: Catalog, folds: int, seed: int = 42) -> dict[str, int]:
    """topic id -> fold number for every topic with content; `source` topics get TRAIN_ONLY."""
    if folds < 2:
        raise InputError(f"--folds {folds}: need at least 2 folds to hold one out")
    pairs = catalog.correlations.join(
        catalog.topics.select(pl.col("id").alias("topic_id"), "language", "category"), on="topic_id")
    source = pairs.filter(pl.col("category") == "source")
    splittable = pairs.filter(pl.col("category").fill_null("") != "source")
    if splittable["topic_id"].n_unique() < folds:
        raise InputError(f"--folds {folds}: only {splittable['topic_id'].n_unique()} non-source topics have content")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = {topic: TRAIN_ONLY for topic in source["topic_id"].to_list()}
    labels = splittable["language"].to_numpy()
    groups = splittable["topic_id"].to_numpy()
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        for topic in np.unique(groups[held_out]):
            assignment[str(topic)] = fold
    return assignment


def split_topics(catalog: Catalog, folds: int, fold: int | None, seed: int = 42) -> tuple[list[str], list[str]]:
    """(training topic ids, held-out topic ids); with `fold` None every topic with content trains."""
    if fold is None:
        return sorted(catalog.gold), []
    if not 0 <= fold < folds:
        raise InputError(f"--fold {fold}: must be between 0 and {folds - 1}")
    assignment = topic_folds(catalog, folds, seed)
    train = sorted(t for t, f in assignment.items() if f != fold)
    held_out = sorted(t for t, f in assignment.items() if f == fold)
    return train, held_out


def seen_topics(artifact: Path, catalog: Catalog) -> set[str]:
    """The catalog topics a trained retriever or reranker learnt from, read from its manifest: all of them,
    or all but its held-out fold; none for an untrained model (no manifest of a trained kind)."""
    manifest = Manifest.read(artifact) if (artifact / MANIFEST).is_file() else None
    if manifest is None or manifest.kind not in ("retriever", "reranker"):
        return set()
    if manifest.data["hash"] != catalog.data_hash:
        raise InputError(f"{artifact} was trained on another catalog ({', '.join(manifest.data['files'])}); "
                         "cannot tell which of these topics it saw")
    params = manifest.params
    if params.get("fold") is None:
        return set(catalog.gold)
    assignment = topic_folds(catalog, params["folds"], params["seed"])
    return {topic for topic, fold in assignment.items() if fold != params["fold"]}
