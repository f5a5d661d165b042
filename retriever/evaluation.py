"""Retrieval metrics (recall@k micro and per topic, MAP@k) and the held-out evaluation used by training
logs, `edurank evaluate retrieval` and the benchmarks alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edurank.artifacts import atomic_write_text
from edurank.plots import save_line_plot
from edurank.retriever.catalog import Catalog
from edurank.retriever.config import DEFAULT_KS
from edurank.retriever.content_index import build_faiss
from edurank.retriever.model import BiEncoder


def recall_at_k(ranked: Sequence[Sequence[str]], gold: Sequence[set[str]], ks: Sequence[int]) -> dict[str, float]:
    """`recall@k` = gold pairs found in the top k over all gold pairs (micro); `mean_recall@k` averages
    each topic's own recall (macro), so topics with many items do not dominate."""
    result: dict[str, float] = {}
    total = sum(len(g) for g in gold)
    for k in ks:
        hits = [len(g.intersection(r[:k])) for r, g in zip(ranked, gold, strict=True)]
        result[f"recall@{k}"] = sum(hits) / total if total else 0.0
        result[f"mean_recall@{k}"] = float(np.mean([h / len(g) for h, g in zip(hits, gold, strict=True)])) \
            if gold else 0.0
    return result


def average_precision_at_k(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """AP@k: precision at each rank holding a gold item, summed, over min(|gold|, k)."""
    hits, score = 0, 0.0
    for rank, item in enumerate(ranked[:k], start=1):
        if item in gold:
            hits += 1
            score += hits / rank
    return score / min(len(gold), k) if gold else 0.0


def mean_average_precision(ranked: Sequence[Sequence[str]], gold: Sequence[set[str]], k: int = 25) -> float:
    """MAP@k of ranked item lists against each topic's set of relevant items (any number of them)."""
    return float(np.mean([average_precision_at_k(r, g, k) for r, g in zip(ranked, gold, strict=True)])) \
        if gold else 0.0


def retrieve(encoder: BiEncoder, catalog: Catalog, topic_ids: Sequence[str], k: int,
             content_vectors: np.ndarray | None = None, batch_size: int = 64) -> list[list[str]]:
    """Top-k content ids for each topic, searching the whole catalog with an exact index."""
    if content_vectors is None:
        content_vectors = encoder.encode_content(catalog, batch_size=batch_size)
    topics = catalog.topics_in_order(topic_ids)
    queries = encoder.encode_topics(catalog, topics, batch_size=batch_size)
    _, rows = build_faiss(content_vectors).search(queries, min(k, len(catalog.content)))
    ids = catalog.content["id"].to_list()
    return [[ids[r] for r in row if r >= 0] for row in rows]


def evaluate_retrieval(encoder: BiEncoder, catalog: Catalog, topic_ids: Sequence[str] | None = None,
                       ks: Sequence[int] = DEFAULT_KS, map_k: int = 25,
                       content_vectors: np.ndarray | None = None) -> dict[str, Any]:
    """Recall@k over the topics' gold items; MAP@map_k too when every topic has exactly one gold item."""
    gold_of = catalog.gold
    topic_ids = sorted(gold_of) if topic_ids is None else [t for t in topic_ids if t in gold_of]
    ranked = retrieve(encoder, catalog, topic_ids, max(ks), content_vectors)
    gold = [gold_of[t] for t in topic_ids]
    report: dict[str, Any] = {"topics": len(topic_ids), "gold_pairs": sum(len(g) for g in gold),
                              "catalog_items": len(catalog.content)}
    report.update(recall_at_k(ranked, gold, ks))
    if gold and all(len(g) == 1 for g in gold):
        report[f"map@{map_k}"] = mean_average_precision(ranked, gold, map_k)
    return report


def write_report(report: dict[str, Any], out_dir: Path, ks: Sequence[int] = DEFAULT_KS) -> tuple[Path, Path]:
    """report.json plus recall_at_k.png (micro and per-topic recall against k)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "report.json", out_dir / "recall_at_k.png"
    atomic_write_text(json_path, json.dumps(report, indent=2))

    def draw(axis: Any) -> None:
        axis.plot(ks, [report[f"recall@{k}"] for k in ks], marker="o", label="recall@k (micro)")
        axis.plot(ks, [report[f"mean_recall@{k}"] for k in ks], marker="s", label="mean recall@k per topic")
        axis.set_xscale("log")
        axis.set_xticks(list(ks), [str(k) for k in ks])

    save_line_plot(png_path, draw, "k", "recall", f"{report.get('model', 'model')}: {report['topics']} topics")
    return json_path, png_path
