"""`edurank evaluate recommend`: the whole recommend pipeline (retrieve -> second stage -> rule) run on a
catalog's own topics and scored against its gold links: mean F2, precision, recall, MAP@25, the F2-against-
threshold curve and the second stage's milliseconds per topic."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edurank.artifacts import atomic_write_text
from edurank.pipelines.recommend import STAGE_TWO, Query, Recommender
from edurank.plots import save_line_plot
from edurank.reranker.decision import DecisionRule
from edurank.reranker.evaluation import recommend_metrics, threshold_curve, topic_scores
from edurank.retriever.catalog import Catalog
from edurank.retriever.texts import topic_parts
from edurank.timing import StageTimes


def evaluate_recommend(recommender: Recommender, catalog: Catalog, topic_ids: Sequence[str] | None = None,
                       candidates: int = 32, rule: DecisionRule | None = None) -> dict[str, Any]:
    """Run the pipeline on the catalog's own topics (with gold) and score what it returns."""
    gold_of = catalog.gold
    topic_ids = sorted(gold_of) if topic_ids is None else [t for t in topic_ids if t in gold_of]
    topics = catalog.topics_in_order(topic_ids)
    queries = [Query(parts, topic_id=topic_id, language=language) for parts, topic_id, language in
               zip(topic_parts(topics), topics["id"], topics["language"], strict=True)]
    timer = StageTimes()
    frames = recommender.scored_candidates(queries, candidates, rerank=True, timer=timer)
    gold = [gold_of[t] for t in topic_ids]
    probabilities = [f["probability"].to_numpy() for f in frames]
    ranked = [f["id"].to_list() for f in frames]
    scores = topic_scores(probabilities, ranked, gold)
    rule = rule or recommender.rule
    report = recommend_metrics(scores, rule, ranked, gold)
    report["candidates"] = candidates if recommender.ranker is None else asdict(recommender.ranker.candidates)
    report["curve"] = threshold_curve(scores, rule)
    report["seconds"] = {k: round(v, 2) for k, v in timer.seconds.items()}
    stage_two = [s for s in STAGE_TWO if s in timer.seconds]
    report["stage2_ms_per_topic"] = round(1000 * sum(timer.seconds[s] for s in stage_two) / max(len(queries), 1), 2)
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
