"""Cross-validation folds over topics: group = topic (its pairs never straddle folds), stratified by
language; topics of category `source` always stay in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from edurank.artifacts import MANIFEST, read_manifest
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
    manifest = read_manifest(artifact) if (artifact / MANIFEST).is_file() else {}
    if manifest.get("kind") not in ("retriever", "reranker"):
        return set()
    if manifest["data"]["catalog_hash"] != catalog.data_hash:
        raise InputError(f"{artifact} was trained on another catalog ({', '.join(manifest['data']['files'])}); "
                         "cannot tell which of these topics it saw")
    params = manifest["params"]
    if params.get("fold") is None:
        return set(catalog.gold)
    assignment = topic_folds(catalog, params["folds"], params["seed"])
    return {topic for topic, fold in assignment.items() if fold != params["fold"]}


def multilabel_folds(labels: np.ndarray, folds: int, seed: int = 42) -> np.ndarray:
    """Fold number per row, balancing every column's distribution of values across folds at once
    (iterative stratification, Sechidis et al. 2011, via `iterative-stratification`): each column's
    distinct values become one-hot labels, so every trait's score levels spread evenly."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if folds < 2 or folds > len(labels):
        raise InputError(f"--folds {folds}: need between 2 and {len(labels)} folds for {len(labels)} rows")
    onehot = np.concatenate([labels[:, [j]] == np.unique(labels[:, j])[None, :] for j in range(labels.shape[1])],
                            axis=1).astype(int)
    assignment = np.empty(len(labels), dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), onehot)):
        assignment[held_out] = fold
    return assignment


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 42) -> np.ndarray:
    """Fold number per row, each label's rows spread evenly over the folds (labels rarer than `folds`
    rows go wherever the splitter puts them)."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2 or folds > len(labels):
        raise InputError(f"--folds {folds}: need between 2 and {len(labels)} folds for {len(labels)} rows")
    assignment = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        assignment[held_out] = fold
    return assignment


def check_train_folds(train_folds: int | None, folds: int) -> None:
    """--train-folds N (train only the first N folds while exploring) must name folds that exist."""
    if train_folds is not None and not 1 <= train_folds <= folds:
        raise InputError(f"--train-folds {train_folds}: must be between 1 and --folds {folds}")
