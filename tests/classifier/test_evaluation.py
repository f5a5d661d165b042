"""Classifier figures by hand: MAP@3 and accuracy@1 per category, and confident learning's label errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from edurank.classifier.evaluation import classification_report, find_label_issues, ranked_labels


def test_report_per_category_by_hand() -> None:
    truth = ["True_Correct:NA", "True_Neither:NA", "False_Misconception:Double"]
    ranked = [["True_Correct:NA", "True_Neither:NA"], ["True_Correct:NA", "True_Neither:NA"],
              ["False_Neither:NA", "False_Correct:NA", "True_Correct:NA"]]
    report = classification_report(truth, ranked)
    assert report["map3"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-4)
    assert report["accuracy1"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["categories"]["True_Neither"] == {"rows": 1, "map3": 0.5, "accuracy1": 0.0}
    assert list(report["categories"]) == ["True_Correct", "True_Neither", "False_Misconception"]


def test_ranked_labels_best_first() -> None:
    assert ranked_labels(np.array([[0.1, 0.7, 0.2]]), ["a", "b", "c"], k=2) == [["b", "c"]]


def test_confident_learning_flags_a_flipped_label() -> None:
    labels = ["True_Correct:NA", "True_Neither:NA", "False_Neither:NA"]
    rng = np.random.default_rng(0)
    given = rng.integers(0, 3, size=90)
    probabilities = np.full((90, 3), 0.05)
    probabilities[np.arange(90), given] = 0.9
    flipped = 7
    given[flipped] = (given[flipped] + 1) % 3  # the model is sure of the old label
    frame = pl.DataFrame({"row_id": [str(i) for i in range(90)], "QuestionId": ["1"] * 90,
                          "StudentExplanation": ["x"] * 90, "label": [labels[g] for g in given]})
    issues = find_label_issues(frame, probabilities, labels)
    assert issues["row_id"].to_list() == ["7"]
    assert issues["suggested"][0] == labels[(given[flipped] - 1) % 3] and issues["given_probability"][0] == 0.05
