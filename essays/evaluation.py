"""MCRMSE, the metric of essay trait scoring (mean over traits of each trait's RMSE), and the evaluation
report: figures as JSON and a predicted-vs-true scatter per trait as PNG."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edurank.artifacts import hash_files
from edurank.errors import InputError
from edurank.essays.data import HIGH, ID, LOW, TEXT, TRAITS, load_essays, scores
from edurank.timing import StageTimes

log = logging.getLogger(__name__)


def trait_rmse(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """RMSE per column of two (essays, traits) arrays."""
    return np.sqrt(np.mean((np.asarray(truth, np.float64) - np.asarray(predicted, np.float64)) ** 2, axis=0))


def mcrmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(trait_rmse(truth, predicted).mean())


def score_report(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """MCRMSE, per-trait RMSE, and the baseline of predicting each trait's mean of `truth` (for scale)."""
    rmse = trait_rmse(truth, predicted)
    baseline = trait_rmse(truth, np.broadcast_to(truth.mean(axis=0), truth.shape))
    return {"essays": len(truth), "mcrmse": round(float(rmse.mean()), 4),
            "rmse": {trait: round(float(value), 4) for trait, value in zip(TRAITS, rmse, strict=True)},
            "mean_baseline_mcrmse": round(float(baseline.mean()), 4)}


def evaluate_essays(model: str | Path, data: Path, stored_oof: bool = False) \
        -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Score `data` with the artifact at `model` (or, with `stored_oof`, read the artifact's out-of-fold
    predictions for the essays of `data`); returns the report, the true and the predicted scores."""
    from edurank.essays.scorer import EssayScorer, essay_artifact, oof_predictions

    frame = load_essays(data)
    path, manifest = essay_artifact(model)  # --oof needs no model loaded, only the stored predictions
    version = manifest.version
    timing: dict[str, Any] = {}
    if stored_oof:
        frame = frame.join(oof_predictions(path), on=ID, how="inner")
        if frame.is_empty():
            raise InputError(f"{data}: none of its essays has an out-of-fold prediction in {path}")
        predicted = frame.select(f"blend_{trait}" for trait in TRAITS).to_numpy()
    else:
        if manifest.data.get("hash") == hash_files([data]):
            log.warning("%s is the data %s was trained on: these figures are not held-out (see --oof)",
                        data, version)
        scorer = EssayScorer.load(path)
        started, times = time.perf_counter(), StageTimes()
        predicted = scorer.score(frame[TEXT].to_list(), times)
        timing = {"seconds_per_essay": round((time.perf_counter() - started) / frame.height, 4),
                  "stage_seconds": {stage: round(seconds, 2) for stage, seconds in times.seconds.items()}}
    truth = scores(frame)
    report = {"model": str(path), "version": version, "data": str(data),
              "predictions": "out-of-fold" if stored_oof else "scored", **score_report(truth, predicted),
              **timing}
    return report, truth, predicted


def write_report(report: dict[str, Any], truth: np.ndarray, predicted: np.ndarray, out: Path) -> tuple[Path, Path]:
    """report.json and scores.png (one panel per trait, jittered so the half-point grid stays readable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "report.json", out / "scores.png"
    json_path.write_text(json.dumps(report, indent=2))
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, size=truth.shape)
    figure, axes = plt.subplots(2, 3, figsize=(12, 7.5), sharex=True, sharey=True)
    for j, (axis, trait) in enumerate(zip(axes.flat, TRAITS, strict=True)):
        axis.scatter(truth[:, j] + jitter[:, j], predicted[:, j], s=4, alpha=0.35)
        axis.plot([LOW, HIGH], [LOW, HIGH], color="grey", linewidth=1)
        axis.set_title(f"{trait}  RMSE {report['rmse'][trait]:.3f}")
        axis.set_xlim(LOW - 0.3, HIGH + 0.3)
        axis.set_ylim(LOW - 0.3, HIGH + 0.3)
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("true score (jittered)")
    for axis in axes[:, 0]:
        axis.set_ylabel("predicted")
    figure.suptitle(f"essay traits: MCRMSE {report['mcrmse']:.4f} over {report['essays']} essays")
    figure.tight_layout()
    figure.savefig(png_path, dpi=90)
    plt.close(figure)
    return json_path, png_path
