"""Judging the misconception classifier: MAP@k of ranked labels (the task's metric is MAP@3: each row has
one true label; a hit at rank r scores 1/r, a miss 0, rows averaged), accuracy@1, figures per category,
and likely label errors found by confident learning."""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from edurank.artifacts import hash_files
from edurank.classifier.data import (
    ANSWER,
    CATEGORIES,
    EXPLANATION,
    LABEL,
    QUESTION,
    QUESTION_TEXT,
    ROW,
    load_responses,
)
from edurank.errors import InputError
from edurank.timing import StageTimes

log = logging.getLogger(__name__)


def single_label_map(truth: Sequence[Any], ranked: Sequence[Sequence[Any]], k: int = 3) -> float:
    """MAP@k with one true label per row: 1 / the rank of the true label in the top k, else 0, averaged."""
    if len(truth) != len(ranked):
        raise ValueError(f"{len(truth)} true labels but {len(ranked)} rankings")
    if len(truth) == 0:
        return 0.0
    total = 0.0
    for label, labels in zip(truth, ranked, strict=True):
        top = list(labels[:k])
        if label in top:
            total += 1.0 / (top.index(label) + 1)
    return total / len(truth)


def ranked_labels(probabilities: np.ndarray, labels: Sequence[str], k: int = 3) -> list[list[str]]:
    """Each row's `k` most probable labels, best first."""
    return [[labels[i] for i in row] for row in np.argsort(-probabilities, axis=1)[:, :k]]


def classification_report(truth: Sequence[str], ranked: Sequence[Sequence[str]]) -> dict[str, Any]:
    """MAP@3 and accuracy@1 overall and per true category (the label's part before ':')."""
    def figures(rows: list[int]) -> dict[str, Any]:
        chosen = [ranked[i] for i in rows]
        return {"rows": len(rows), "map3": round(single_label_map([truth[i] for i in rows], chosen), 4),
                "accuracy1": round(float(np.mean([ranked[i][0] == truth[i] for i in rows])) if rows else 0.0, 4)}

    by_category: dict[str, list[int]] = {}
    for i, label in enumerate(truth):
        by_category.setdefault(label.split(":")[0], []).append(i)
    return {**figures(list(range(len(truth)))),
            "categories": {category: figures(by_category[category]) for category in CATEGORIES
                           if category in by_category}}


def find_label_issues(frame: pl.DataFrame, probabilities: np.ndarray, labels: Sequence[str],
                      filter_by: str = "prune_by_noise_rate") -> pl.DataFrame:
    """Likely label errors by confident learning (cleanlab) on held-out probabilities, worst first: the
    given label, the label the model believes, the given label's probability and cleanlab's quality score."""
    import cleanlab.filter
    import cleanlab.rank

    index_of = {label: i for i, label in enumerate(labels)}
    given = np.array([index_of[label] for label in frame[LABEL]])
    # cleanlab wants every class seen and rows summing to 1: restrict to the labels present, renormalise
    present = np.unique(given)
    remap = np.full(len(labels), -1)
    remap[present] = np.arange(len(present))
    probs = probabilities[:, present] + 1e-12
    probs /= probs.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():  # "too few examples in class k": rare labels, expected here
        warnings.simplefilter("ignore", UserWarning)
        issues = cleanlab.filter.find_label_issues(remap[given], probs, filter_by=filter_by)
    quality = cleanlab.rank.get_label_quality_scores(remap[given], probs)
    rows = np.flatnonzero(issues)
    rows = rows[np.argsort(quality[rows], kind="stable")]
    return pl.DataFrame({
        ROW: frame[ROW].gather(rows), QUESTION: frame[QUESTION].gather(rows),
        EXPLANATION: frame[EXPLANATION].gather(rows), "given": frame[LABEL].gather(rows),
        "suggested": [labels[present[i]] for i in probs[rows].argmax(axis=1)],
        "given_probability": probabilities[rows, given[rows]].round(4),
        "quality": quality[rows].round(4)}, schema_overrides={ROW: pl.String, QUESTION: pl.String})


def evaluate_classifier(model: str | Path, data: Path, stored_oof: bool = False) \
        -> tuple[dict[str, Any], pl.DataFrame, np.ndarray, list[str]]:
    """Classify the labelled `data` with the artifact at `model` (or, with `stored_oof`, read the artifact's
    out-of-fold probabilities for its rows); returns the report, the rows judged, their probabilities and
    the label vocabulary."""
    from edurank.classifier.predictor import MisconceptionClassifier, Response, classifier_artifact, oof_probabilities

    frame = load_responses(data)
    path, manifest = classifier_artifact(model)  # --oof needs no model loaded, only the stored probabilities
    timing: dict[str, Any] = {}
    if stored_oof:
        stored = oof_probabilities(path)
        frame = frame.join(stored.select(ROW, "probabilities"), on=ROW, how="inner")
        if frame.is_empty():
            raise InputError(f"{data}: none of its rows has an out-of-fold prediction in {path}")
        probabilities = np.array(frame["probabilities"].to_list(), dtype=np.float32)
        labels = json.loads((path / "labels.json").read_text())["labels"]
    else:
        if manifest.data.get("hash") == hash_files([data]):
            log.warning("%s is the data %s was trained on: these figures are not held-out (see --oof)", data,
                        manifest.version)
        classifier = MisconceptionClassifier.load(path)
        labels = classifier.labels
        responses = [Response(q, t, a, e) for q, t, a, e in
                     frame.select(QUESTION, QUESTION_TEXT, ANSWER, EXPLANATION).iter_rows()]
        started, times = time.perf_counter(), StageTimes()
        probabilities, _ = classifier.probabilities(responses, times)
        timing = {"seconds_per_response": round((time.perf_counter() - started) / frame.height, 5),
                  "stage_seconds": {stage: round(seconds, 2) for stage, seconds in times.seconds.items()}}
    unknown = sorted(set(frame[LABEL]) - set(labels))
    if unknown:  # a label the classifier cannot output still counts as a miss; cleanlab needs it in the list
        log.warning("%d label(s) of %s are not in the classifier's vocabulary: %s", len(unknown), data,
                    ", ".join(unknown[:5]))
        labels = [*labels, *unknown]
        probabilities = np.pad(probabilities, ((0, 0), (0, len(unknown))))
    report = {"model": str(path), "version": manifest.version, "data": str(data),
              "predictions": "out-of-fold" if stored_oof else "scored",
              **classification_report(frame[LABEL].to_list(), ranked_labels(probabilities, labels)), **timing}
    return report, frame, probabilities, labels


def write_report(report: dict[str, Any], frame: pl.DataFrame, probabilities: np.ndarray, labels: Sequence[str],
                 out: Path) -> tuple[Path, Path, Path]:
    """report.json, confusion.png (true vs top-1 category, row-normalised) and label_issues.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    issues = find_label_issues(frame, probabilities, labels)
    report = {**report, "label_issues": len(issues)}
    json_path, png_path, issues_path = out / "report.json", out / "confusion.png", out / "label_issues.csv"
    json_path.write_text(json.dumps(report, indent=2))
    issues.write_csv(issues_path)
    index_of = {category: i for i, category in enumerate(CATEGORIES)}
    confusion = np.zeros((len(CATEGORIES), len(CATEGORIES)))
    predicted = [labels[i].split(":")[0] for i in probabilities.argmax(axis=1)]
    for true_label, guess in zip(frame[LABEL], predicted, strict=True):
        confusion[index_of[true_label.split(":")[0]], index_of[guess]] += 1
    shares = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CATEGORIES)):
        for j in range(len(CATEGORIES)):
            axis.text(j, i, f"{shares[i, j]:.2f}\n({int(confusion[i, j])})", ha="center", va="center", fontsize=7,
                      color="white" if shares[i, j] > 0.5 else "black")
    axis.set_xticks(range(len(CATEGORIES)), CATEGORIES, rotation=35, ha="right")
    axis.set_yticks(range(len(CATEGORIES)), CATEGORIES)
    axis.set_xlabel("predicted category (top-1 label)")
    axis.set_ylabel("true category")
    axis.set_title(f"MAP@3 {report['map3']:.4f}, accuracy@1 {report['accuracy1']:.4f} over {report['rows']} rows")
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return json_path, png_path, issues_path
