"""Recommendation metrics over the full pipeline (retrieve -> rerank -> decide): mean F2, precision and
recall per topic, MAP@25 of the reranked order for one-gold catalogs, and the F2-against-threshold curve;
and, from a reranker's out-of-fold scores, its held-out figures, calibration and tuned rule. Used by the
reranker's training report, `edurank evaluate recommend` and the benchmarks alike."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import polars as pl

from edurank.reranker.calibration import Calibration
from edurank.reranker.decision import DEFAULT_THRESHOLDS, DecisionRule, TopicScores, rule_scores, tune_rule
from edurank.retriever.evaluation import mean_average_precision

log = logging.getLogger(__name__)


def topic_scores(probabilities: Sequence[np.ndarray], candidates: Sequence[Sequence[str]],
                 gold: Sequence[set[str]]) -> list[TopicScores]:
    return [TopicScores.sorted(p, [c in g for c in ids], len(g))
            for p, ids, g in zip(probabilities, candidates, gold, strict=True)]


def recommend_metrics(scores: Sequence[TopicScores], rule: DecisionRule, ranked: Sequence[Sequence[str]],
                      gold: Sequence[set[str]], map_k: int = 25) -> dict[str, Any]:
    """The rule's mean F2 / precision / recall per topic, candidate recall, and MAP@k for one-gold catalogs."""
    at_rule = rule_scores(scores, [rule.threshold], rule.max_items, rule.min_items, margin=rule.margin)
    report: dict[str, Any] = {
        "topics": len(scores), "gold_pairs": int(sum(s.gold_count for s in scores)),
        "mean_f2": float(at_rule["f"][0]), "mean_precision": float(at_rule["precision"][0]),
        "mean_recall": float(at_rule["recall"][0]),
        "candidate_recall": float(sum(s.labels.sum() for s in scores) / max(sum(s.gold_count for s in scores), 1)),
        "rule": rule.to_dict(),
    }
    if gold and all(len(g) == 1 for g in gold):
        report[f"map@{map_k}"] = mean_average_precision(ranked, gold, map_k)
    return report


def threshold_curve(scores: Sequence[TopicScores], rule: DecisionRule,
                    thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, list[float]]:
    """Mean F2, precision and recall against the threshold at the rule's cap and minimum."""
    curve = rule_scores(scores, thresholds, rule.max_items, rule.min_items, margin=rule.margin)
    return {"threshold": list(thresholds), **{k: [round(float(v), 5) for v in vs] for k, vs in curve.items()}}


# -- out-of-fold scores: held-out figures, calibration and the tuned rule -----------------------------------

def topic_score_list(oof: pl.DataFrame, gold: dict[str, set[str]], column: str = "probability") -> \
        tuple[list[str], list[TopicScores], list[list[str]]]:
    """Per topic of an OOF frame: its TopicScores and its candidates in descending `column` order."""
    topics, scores, ranked = [], [], []
    for (topic,), group in oof.sort(["topic_id", "rank"]).group_by("topic_id", maintain_order=True):
        group = group.sort(column, descending=column != "rank", maintain_order=True)
        values = group[column].to_numpy().astype(np.float64)
        topics.append(str(topic))
        scores.append(TopicScores.sorted(-values if column == "rank" else values, group["label"].to_list(),
                                         len(gold[str(topic)])))
        ranked.append(group["content_id"].to_list())
    return topics, scores, ranked


def oof_report(oof: pl.DataFrame, gold: dict[str, set[str]], rule: DecisionRule) -> dict[str, Any]:
    """Held-out figures per fold, each with a rule tuned on the other folds' OOF (so no fold's figure was
    tuned on itself), their topic-weighted mean, and MAP@25 of retrieval alone against reranked."""
    report: dict[str, Any] = {"folds": {}}
    folds = sorted(oof["fold"].unique().to_list())
    weighted: dict[str, float] = {}
    for fold in folds:
        fold_rule = tune_rule(topic_score_list(oof.filter(pl.col("fold") != fold), gold)[1]) \
            if len(folds) > 1 else rule
        own = oof.filter(pl.col("fold") == fold)
        topics, scores, ranked = topic_score_list(own, gold)
        fold_gold = [gold[t] for t in topics]
        figures = recommend_metrics(scores, fold_rule, ranked, fold_gold)
        if "map@25" in figures:
            figures["retrieval_map@25"] = mean_average_precision(topic_score_list(own, gold, "rank")[2], fold_gold, 25)
        report["folds"][str(fold)] = figures
        for key, value in figures.items():
            if isinstance(value, float):
                weighted[key] = weighted.get(key, 0.0) + value * figures["topics"]
    total = sum(f["topics"] for f in report["folds"].values())
    report["held_out"] = {"topics": total, **{key: value / total for key, value in weighted.items()}}
    topics, scores, ranked = topic_score_list(oof, gold)
    report["in_sample_rule"] = recommend_metrics(scores, rule, ranked, [gold[t] for t in topics])
    return report


def calibrate_and_tune(oof: pl.DataFrame, gold: dict[str, set[str]]) -> \
        tuple[Calibration, DecisionRule, dict[str, Any], pl.DataFrame]:
    """Fit Platt scaling on the OOF logits, with and without the retrieval rank as a second feature, tune
    the rule on each, and keep whichever gives the higher held-out (other-folds-tuned) mean F2."""
    logits, labels, ranks = oof["logit"].to_numpy(), oof["label"].to_numpy(), oof["rank"].to_numpy()
    options = {}
    for name, calibration in (("logit", Calibration.fit(logits, labels)),
                              ("logit+rank", Calibration.fit(logits, labels, ranks))):
        scored = oof.with_columns(pl.Series("probability", calibration(logits, ranks)))
        rule = tune_rule(topic_score_list(scored, gold)[1])
        options[name] = (calibration, rule, oof_report(scored, gold, rule), scored)
    chosen = max(options, key=lambda name: options[name][2]["held_out"]["mean_f2"])
    calibration, rule, metrics, scored = options[chosen]
    # the same pipeline without the reranker: rank alone, calibrated and cut by its own tuned rule
    log_rank = -np.log(ranks.astype(np.float64))
    by_rank = oof.with_columns(pl.Series("probability", Calibration.fit(log_rank, labels)(log_rank)))
    metrics["retrieval_only"] = oof_report(by_rank, gold, tune_rule(topic_score_list(by_rank, gold)[1]))["held_out"]
    metrics["calibration_options"] = {name: {"held_out_mean_f2": option[2]["held_out"]["mean_f2"],
                                             "calibration": asdict(option[0])} for name, option in options.items()}
    metrics["calibration_chosen"] = chosen
    log.info("calibration %s chosen: %s", chosen, {k: round(v["held_out_mean_f2"], 4)
                                                   for k, v in metrics["calibration_options"].items()})
    return calibration, rule, metrics, scored
