from __future__ import annotations

import itertools

import numpy as np

from edurank.reranker.decision import DecisionRule, TopicScores, fbeta, rule_scores, tune_rule


def test_rule_counts_threshold_cap_and_minimum() -> None:
    probabilities = np.array([0.9, 0.7, 0.4, 0.2])
    assert DecisionRule(threshold=0.5, max_items=10).count(probabilities) == 2
    assert DecisionRule(threshold=0.5, max_items=1).count(probabilities) == 1
    assert DecisionRule(threshold=0.95, max_items=10, min_items=1).count(probabilities) == 1
    assert DecisionRule(threshold=0.95, max_items=10, min_items=0).count(probabilities) == 0
    assert DecisionRule(threshold=0.0, max_items=10).count(probabilities) == 4
    assert DecisionRule(threshold=0.5).count(np.array([])) == 0


def test_fbeta_by_hand() -> None:
    # 1 hit of 2 returned, 3 gold: P = 1/2, R = 1/3, F2 = 5PR / (4P + R) = (5/6) / (7/3) = 5/14
    assert np.isclose(fbeta(np.array([1]), np.array([2]), 3)[0], 5 / 14)
    assert fbeta(np.array([0]), np.array([2]), 3)[0] == 0.0
    assert np.isclose(fbeta(np.array([2]), np.array([2]), 2, beta=1.0)[0], 1.0)


def brute_force(topics: list[TopicScores], rule: DecisionRule) -> float:
    values = []
    for topic in topics:
        count = rule.count(topic.probabilities)
        hits = int(topic.labels[:count].sum())
        values.append(float(fbeta(np.array([hits]), np.array([count]), topic.gold_count)[0]))
    return float(np.mean(values))


def random_topics(seed: int, n: int = 30) -> list[TopicScores]:
    rng = np.random.default_rng(seed)
    topics = []
    for _ in range(n):
        size = int(rng.integers(1, 12))
        labels = rng.random(size) < 0.3
        probabilities = np.clip(rng.random(size) * 0.6 + labels * 0.3, 0, 1)
        topics.append(TopicScores.sorted(probabilities, labels, int(labels.sum()) + int(rng.integers(0, 2))))
    return topics


def test_vectorised_scores_match_a_brute_force_count() -> None:
    topics = random_topics(0)
    thresholds = [0.1, 0.35, 0.5, 0.8]
    for cap in (1, 3, 10):
        scores = rule_scores(topics, thresholds, cap)["f"]
        for threshold, score in zip(thresholds, scores, strict=True):
            assert np.isclose(score, brute_force(topics, DecisionRule(threshold, cap)))


def test_tuning_finds_the_grid_optimum() -> None:
    topics = random_topics(1)
    thresholds, caps = [round(t, 2) for t in np.arange(0.05, 1.0, 0.05)], (1, 2, 3, 5, 8)
    rule = tune_rule(topics, thresholds, caps)
    best = max(brute_force(topics, DecisionRule(t, c)) for t, c in itertools.product(thresholds, caps))
    assert rule.tuned and np.isclose(brute_force(topics, rule), best)


def test_a_topic_whose_gold_was_not_retrieved_counts_as_zero() -> None:
    missed = TopicScores.sorted([0.9, 0.8], [False, False], gold_count=1)
    found = TopicScores.sorted([0.9, 0.1], [True, False], gold_count=1)
    scores = rule_scores([missed, found], [0.5], max_items=5)
    assert np.isclose(scores["f"][0], 0.5) and np.isclose(scores["recall"][0], 0.5)


def test_margin_keeps_items_close_to_the_best() -> None:
    probabilities = np.array([0.30, 0.27, 0.20, 0.05])
    assert DecisionRule(threshold=0.5, max_items=10).count(probabilities) == 1
    # within 15% of the best (>= 0.255): two items; within 40% (>= 0.18): three
    assert DecisionRule(threshold=0.5, max_items=10, margin=0.15).count(probabilities) == 2
    assert DecisionRule(threshold=0.5, max_items=10, margin=0.4).count(probabilities) == 3
    assert DecisionRule(threshold=0.5, max_items=2, margin=0.4).count(probabilities) == 2  # the cap still holds
    assert DecisionRule(threshold=0.1, max_items=10, margin=0.05).count(probabilities) == 3  # or the threshold


def test_margin_scores_match_a_brute_force_count_and_tuning_finds_the_best() -> None:
    topics = random_topics(2)
    thresholds = [0.2, 0.5, 0.9]
    for margin in (0.1, 0.3, 0.6):
        scores = rule_scores(topics, thresholds, 5, margin=margin)["f"]
        for threshold, score in zip(thresholds, scores, strict=True):
            assert np.isclose(score, brute_force(topics, DecisionRule(threshold, 5, margin=margin)))
    margins = (0.0, 0.2, 0.5)
    rule = tune_rule(topics, thresholds, (2, 5), margins=margins)
    best = max(brute_force(topics, DecisionRule(t, c, margin=m))
               for t, c, m in itertools.product(thresholds, (2, 5), margins))
    assert np.isclose(brute_force(topics, rule), best) and rule.tuned
