"""Recommendation metrics over the full pipeline (retrieve -> rerank -> decide): mean F2, precision and
recall per topic, MAP@25 of the reranked order for one-gold catalogs, and the F2-against-threshold curve.
Used by the reranker's training report, `edurank evaluate recommend` and the benchmarks alike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from edurank.artifacts import atomic_write_text
from edurank.plots import save_line_plot
from edurank.timing import StageTimes
from reranker.decision import DEFAULT_THRESHOLDS, DecisionRule, TopicScores, rule_scores
from reranker.pipeline import Query, Recommender
from retriever.catalog import Catalog
from retriever.evaluation import map_at_k
from retriever.texts import topic_parts


def topic_scores(probabilities: Sequence[np.ndarray], candidates: Sequence[Sequence[str]],
                 gold: Sequence[set[str]]) -> list[TopicScores]:
    return [TopicScores.sorted(p, [c in g for c in ids], len(g))
            for p, ids, g in zip(probabilities, candidates, gold, strict=True)]


def recommend_metrics(scores: Sequence[TopicScores], rule: DecisionRule, ranked: Sequence[Sequence[str]],
                      gold: Sequence[set[str]], map_k: int = 25) -> dict[str, Any]:
    """The rule's mean F2 / precision / recall per topic, candidate recall, and MAP@k for one-gold catalogs."""
    at_rule = rule_scores(scores, [rule.threshold], rule.max_items, rule.min_items)
    report: dict[str, Any] = {
        "topics": len(scores), "gold_pairs": int(sum(s.gold_count for s in scores)),
        "mean_f2": float(at_rule["f"][0]), "mean_precision": float(at_rule["precision"][0]),
        "mean_recall": float(at_rule["recall"][0]),
        "candidate_recall": float(sum(s.labels.sum() for s in scores) / max(sum(s.gold_count for s in scores), 1)),
        "rule": rule.to_dict(),
    }
    if gold and all(len(g) == 1 for g in gold):
        report[f"map@{map_k}"] = map_at_k(ranked, gold, map_k)
    return report


def threshold_curve(scores: Sequence[TopicScores], rule: DecisionRule,
                    thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, list[float]]:
    """Mean F2, precision and recall against the threshold at the rule's cap and minimum."""
    curve = rule_scores(scores, thresholds, rule.max_items, rule.min_items)
    return {"threshold": list(thresholds), **{k: [round(float(v), 5) for v in vs] for k, vs in curve.items()}}


def evaluate_recommend(recommender: Recommender, catalog: Catalog, topic_ids: Sequence[str] | None = None,
                       candidates: int = 32, rule: DecisionRule | None = None) -> dict[str, Any]:
    """Run the pipeline on the catalog's own topics (with gold) and score what it returns."""
    gold_of = catalog.gold
    topic_ids = sorted(gold_of) if topic_ids is None else [t for t in topic_ids if t in gold_of]
    order = pl.DataFrame({"id": list(topic_ids)}).with_row_index("order")
    topics = catalog.topics.join(order, on="id").sort("order")
    queries = [Query(parts) for parts in topic_parts(topics)]
    timer = StageTimes()
    frames = recommender.score(queries, candidates, rerank=True, timer=timer)
    gold = [gold_of[t] for t in topic_ids]
    probabilities = [f["probability"].to_numpy() for f in frames]
    ranked = [f["id"].to_list() for f in frames]
    scores = topic_scores(probabilities, ranked, gold)
    rule = rule or (recommender.reranker.rule if recommender.reranker is not None else DecisionRule())
    report = recommend_metrics(scores, rule, ranked, gold)
    report["candidates"] = candidates
    report["curve"] = threshold_curve(scores, rule)
    report["seconds"] = {k: round(v, 2) for k, v in timer.seconds.items()}
    return report


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """report.json plus f2_threshold.png (mean F2, precision and recall against the threshold)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "report.json", out_dir / "f2_threshold.png"
    atomic_write_text(json_path, json.dumps(report, indent=2))
    curve, rule = report["curve"], report["rule"]

    def draw(axis: Any) -> None:
        for key, label in (("f", "mean F2"), ("precision", "mean precision"), ("recall", "mean recall")):
            axis.plot(curve["threshold"], curve[key], label=label)
        axis.axvline(rule["threshold"], color="grey", linestyle="--", label=f"rule threshold {rule['threshold']:.2f}")

    save_line_plot(png_path, draw, f"threshold (cap {rule['max_items']}, at least {rule['min_items']})",
                   "per-topic mean", f"{report['topics']} topics, mean F2 {report['mean_f2']:.3f}")
    return json_path, png_path
