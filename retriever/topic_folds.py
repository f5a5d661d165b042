"""Cross-validation folds over a catalog's topics: group = topic (its pairs never straddle folds) or a group
key (`group_by`: topics sharing its value stay together), stratified by language; topics of category `source`
always stay in training. Training and evaluation cut the same folds, and a trained model's manifest says which
topics it saw.

A group key is what users bring new: a topics column (`title`: a question's wrong answers; `parent`: a
subject's constructs), a named key read out of the topic's text (`construct`, `subject`: the labels Eedi-style
descriptions carry, "Subject: ... . Construct: ... ."), or `COLUMN~REGEX` (the regex's first group). Holding
out constructs, not questions, is what a platform adding a new lesson sees: none of its questions trained.

`hold_out_items` also holds out a seeded share of the items the held-out fold links: training topics that
link one of them are left out, so those items are never seen in training, as new content is in real use.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from edurank.artifacts import MANIFEST, Manifest
from edurank.errors import InputError
from edurank.retriever.catalog import Catalog

TRAIN_ONLY = -1
# a label inside a description, up to the sentence's end before the next label ("... . Correct answer: ...")
LABELLED = r"(?s){}:\s*(.+?)\.?\s*(?:\.\s+[A-Z][\w ]{{0,30}}:|$)"
NAMED_KEYS = {"construct": ("description", LABELLED.format("Construct")),
              "subject": ("description", LABELLED.format("Subject"))}


def group_key(topics: pl.DataFrame, group_by: str | None) -> pl.Expr:
    """The expression giving each topic its fold group (its own id where the key is null or empty)."""
    if group_by is None:
        return pl.col("id")
    if group_by in topics.columns:
        column, pattern = group_by, None
    elif group_by in NAMED_KEYS:
        column, pattern = NAMED_KEYS[group_by]
    elif "~" in group_by:
        column, pattern = group_by.split("~", 1)
    else:
        raise InputError(f"--group-by {group_by}: not a topics column ({', '.join(topics.columns)}), a named key "
                         f"({', '.join(NAMED_KEYS)}) or COLUMN~REGEX")
    if column not in topics.columns:
        raise InputError(f"--group-by {group_by}: topics have no column {column!r}")
    value = pl.col(column).cast(pl.String)
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as err:
            raise InputError(f"--group-by {group_by}: bad regex ({err})") from None
        value = value.str.extract(pattern, 1 if re.compile(pattern).groups else 0).str.strip_chars()
    return pl.when(value.str.len_chars() > 0).then(value).otherwise(pl.col("id"))


def topic_folds(catalog: Catalog, folds: int, seed: int = 42, group_by: str | None = None) -> dict[str, int]:
    """topic id -> fold number for every topic with content; `source` topics get TRAIN_ONLY."""
    if folds < 2:
        raise InputError(f"--folds {folds}: need at least 2 folds to hold one out")
    group = group_key(catalog.topics, group_by)
    pairs = catalog.correlations.join(
        catalog.topics.select(pl.col("id").alias("topic_id"), "language", "category", group.alias("group")),
        on="topic_id")
    source = pairs.filter(pl.col("category") == "source")
    splittable = pairs.filter(pl.col("category").fill_null("") != "source")
    if splittable["topic_id"].n_unique() < folds:
        raise InputError(f"--folds {folds}: only {splittable['topic_id'].n_unique()} non-source topics have content")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = {topic: TRAIN_ONLY for topic in source["topic_id"].to_list()}
    labels = splittable["language"].to_numpy()
    groups = splittable["group"].to_numpy()
    topics = splittable["topic_id"].to_numpy()
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        for topic in np.unique(topics[held_out]):
            assignment[str(topic)] = fold
    return assignment


def extend_folds(assignment: dict[str, int], catalog: Catalog, folds: int, seed: int = 42,
                 group_by: str | None = None) -> dict[str, int]:
    """Folds cut from a catalog's own links (`assignment`), carried over to `catalog`, whose links a curator's
    feedback changed: topics with no link left drop out, the others keep their fold (so `--fold` holds out
    what `evaluate recommend --fold` scores); a topic only feedback links joins the fold of the topics sharing
    its group, else the fold a seeded hash of its group picks (`source` topics: TRAIN_ONLY)."""
    linked = set(catalog.gold)
    kept = {t: f for t, f in assignment.items() if t in linked}
    new = catalog.topics.filter(pl.col("id").is_in(sorted(linked - set(kept))))
    if not len(new):
        return kept
    group = group_key(catalog.topics, group_by)
    groups = catalog.topics.select("id", group.alias("group"))
    fold_of_group = {g: kept[t] for t, g in groups.filter(pl.col("id").is_in(list(kept))).iter_rows()}
    for topic, value, category in new.select("id", group.alias("group"), "category").iter_rows():
        digest = int(hashlib.sha256(f"{seed}:{value}".encode()).hexdigest(), 16)
        kept[topic] = TRAIN_ONLY if category == "source" else fold_of_group.get(value, digest % folds)
    return kept


def unseen_items(catalog: Catalog, assignment: dict[str, int], fold: int, share: float, seed: int = 42) -> set[str]:
    """The seeded `share` of the items fold `fold` links that are held out with it (none when share is 0)."""
    if share <= 0:
        return set()
    linked = sorted({item for topic, f in assignment.items() if f == fold for item in catalog.gold.get(topic, ())})
    rng = np.random.default_rng([seed, fold])
    return {linked[i] for i in rng.permutation(len(linked))[:round(share * len(linked))]}


def training_topics(catalog: Catalog, assignment: dict[str, int], fold: int, share: float = 0.0,
                    seed: int = 42) -> list[str]:
    """The topics that train when `fold` is held out: the other folds' (and source) topics, minus those that
    link one of the fold's held-out items."""
    hidden = unseen_items(catalog, assignment, fold, share, seed)
    return sorted(t for t, f in assignment.items() if f != fold and not catalog.gold.get(t, set()) & hidden)


def split_topics(catalog: Catalog, folds: int, fold: int | None, seed: int = 42, group_by: str | None = None,
                 hold_out_items: float = 0.0) -> tuple[list[str], list[str]]:
    """(training topic ids, held-out topic ids); with `fold` None every topic with content trains."""
    if fold is None:
        return sorted(catalog.gold), []
    if not 0 <= fold < folds:
        raise InputError(f"--fold {fold}: must be between 0 and {folds - 1}")
    assignment = topic_folds(catalog, folds, seed, group_by)
    held_out = sorted(t for t, f in assignment.items() if f == fold)
    return training_topics(catalog, assignment, fold, hold_out_items, seed), held_out


def split_of(params: Any) -> dict[str, Any]:
    """The split arguments (folds, seed, group_by, hold_out_items) of a config object or manifest params."""
    get = params.get if isinstance(params, dict) else lambda name, default=None: getattr(params, name, default)
    return {"folds": get("folds"), "seed": get("seed", 42), "group_by": get("group_by"),
            "hold_out_items": get("hold_out_items", 0.0) or 0.0}


def seen_topics(artifact: Path, catalog: Catalog) -> set[str]:
    """The catalog topics a trained retriever or reranker learnt from, read from its manifest: all of them,
    or all but its held-out fold; none for an untrained model (no manifest of a trained kind, or an export
    of an untrained one, whose manifest names no training data)."""
    manifest = Manifest.read(artifact) if (artifact / MANIFEST).is_file() else None
    if manifest is None or manifest.kind not in ("retriever", "reranker", "ranker") or not manifest.data:
        return set()
    if manifest.data["hash"] != catalog.data_hash:
        raise InputError(f"{artifact} was trained on another catalog ({', '.join(manifest.data['files'])}); "
                         "cannot tell which of these topics it saw")
    params = manifest.params
    if params.get("fold") is None:
        return set(catalog.gold)
    return set(split_topics(catalog, fold=params["fold"], **split_of(params))[0])
