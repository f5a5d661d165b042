"""Trains one short round on a slice of ../shared/data/curriculum and checks held-out recall rises."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from edurank.retriever.catalog import load_catalog
from edurank.training.config import RetrieverConfig
from edurank.training.retriever import train_retriever
from tests.conftest import report_figures, shared_dataset

pytestmark = pytest.mark.integration


def slice_catalog(source: Path, out: Path, topics_with_content: int = 160) -> Path:
    """The first N topics with content, their ancestors, their gold items and as many other items."""
    topics = pl.read_csv(source / "topics.csv", infer_schema=False)
    correlations = pl.read_csv(source / "correlations.csv", infer_schema=False).head(topics_with_content)
    content = pl.read_csv(source / "content.csv", infer_schema=False)
    keep_topics = set(correlations["topic_id"]) | set(topics.filter(pl.col("has_content") == "False")["id"])
    gold = set(correlations["content_ids"].str.split(" ").explode())
    others = content.filter(~pl.col("id").is_in(list(gold))).head(len(gold))
    out.mkdir(parents=True)
    topics.filter(pl.col("id").is_in(list(keep_topics))).write_csv(out / "topics.csv")
    pl.concat([content.filter(pl.col("id").is_in(list(gold))), others]).write_csv(out / "content.csv")
    correlations.write_csv(out / "correlations.csv")
    return out


def test_one_short_round_raises_held_out_recall(tmp_path: Path) -> None:
    catalog = load_catalog(slice_catalog(shared_dataset("curriculum"), tmp_path / "slice"))
    config = RetrieverConfig(rounds=0, epochs=2, batch_size=32, max_tokens=64, freeze_layers=2,
                             learning_rate=1e-4, folds=4, fold=0, eval_ks=(5, 10, 20))
    from edurank.artifacts import read_manifest

    history = read_manifest(train_retriever(catalog, tmp_path / "model", config))["metrics"]["history"]
    untrained, trained = history[0], history[-1]
    report_figures("retriever", [untrained, trained])
    assert untrained["label"] == "untrained" and trained["label"] == "held-out"
    assert trained["topics"] == untrained["topics"] >= 30
    assert trained["recall@10"] > untrained["recall@10"] + 0.03
    assert trained["recall@20"] >= untrained["recall@20"]
