"""`edurank feedback export`: the store's decisions as training data in the LECR layout, and `read_labels`, which
reads the same labels back from an export folder or straight from a database.

A folder holds `correlations.csv` (topic_id, content_ids: the accepted and imported items, space-separated, as a
LECR catalog's correlations), `rejected.csv` (topic_id, content_id: the rejected pairs, hard negatives) and
`decisions.csv` (every current decision with who, when, rank, probability and model versions, for audit); each
file is written whole or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from edurank.artifacts import atomic_path
from edurank.errors import InputError
from edurank.feedback.store import LABELS_SCHEMA, FeedbackStore

CORRELATIONS, REJECTED, DECISIONS = "correlations.csv", "rejected.csv", "decisions.csv"
CORRELATIONS_SCHEMA = {"topic_id": pl.String, "content_ids": pl.String}
REJECTED_SCHEMA = {"topic_id": pl.String, "content_id": pl.String}
DECISIONS_SCHEMA = {"id": pl.Int64, "topic_id": pl.String, "content_id": pl.String, "channel_id": pl.String,
                    "decision": pl.String, "who": pl.String, "at": pl.String, "rank": pl.Int64,
                    "probability": pl.Float64, "versions": pl.String, "source": pl.String}


def export_feedback(store: FeedbackStore, out: Path) -> dict[str, int]:
    """Write the three files into `out`; how many topics, rejected pairs and decisions they hold."""
    labels = store.labels()
    correlations = labels.filter(pl.col("label")).group_by("topic_id") \
        .agg(content_ids=pl.col("content_id").sort().str.join(" ")).sort("topic_id")
    rejected = labels.filter(~pl.col("label")).select("topic_id", "content_id")
    rows = [{"id": d.id, "topic_id": d.topic_id, "content_id": d.content_id, "channel_id": d.channel_id,
             "decision": d.decision, "who": d.who, "at": d.at.isoformat(), "rank": d.rank,
             "probability": d.probability, "versions": json.dumps(d.versions, sort_keys=True), "source": d.source}
            for d in store.current()]
    current = pl.DataFrame(rows, schema=DECISIONS_SCHEMA).sort("id")
    for name, frame in ((CORRELATIONS, correlations), (REJECTED, rejected), (DECISIONS, current)):
        with atomic_path(out / name) as tmp:
            frame.write_csv(tmp)
    return {"topics": len(correlations), "accepted": int(labels["label"].sum()), "rejected": len(rejected),
            "decisions": len(current)}


def read_export(folder: Path) -> pl.DataFrame:
    """The labels frame of an export folder: its correlations as True, its rejected pairs as False."""
    for name in (CORRELATIONS, REJECTED):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: no {name}; not an `edurank feedback export` folder")
    accepted = pl.read_csv(folder / CORRELATIONS, schema=CORRELATIONS_SCHEMA) \
        .with_columns(pl.col("content_ids").str.split(" ")).explode("content_ids") \
        .rename({"content_ids": "content_id"}).filter(pl.col("content_id") != "")
    rejected = pl.read_csv(folder / REJECTED, schema=REJECTED_SCHEMA)
    return pl.concat([accepted.with_columns(label=pl.lit(True)), rejected.with_columns(label=pl.lit(False))]) \
        .cast(LABELS_SCHEMA).sort("topic_id", "content_id")  # type: ignore[arg-type]


def read_labels(source: str | Path) -> pl.DataFrame:
    """topic_id, content_id, label (Boolean) from an export folder, or from a database (a SQLite path or a URL),
    read without writing to it: one at an older schema is refused, not migrated (FeedbackStore.open, create=False)."""
    if "://" not in str(source) and Path(source).is_dir():
        return read_export(Path(source))
    with FeedbackStore.open(source, create=False) as store:
        return store.labels()
