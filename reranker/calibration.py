"""Platt scaling of a second stage's raw scores into probabilities, shared by the cross-encoder and the LightGBM
ranker (numpy only: loading the ranker must not import torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """Platt scaling: p = sigmoid(slope * logit + rank_weight * log(rank) + intercept).

    The default undoes the `pos_weight` of the training loss (a weighted BCE's optimum logit is the true
    log-odds plus log(pos_weight)). A fit on out-of-fold logits may also weigh the retrieval rank, a prior
    the cross-encoder cannot see; training keeps that only when it raises held-out F2.
    """

    slope: float = 1.0
    intercept: float = 0.0
    rank_weight: float = 0.0
    fitted: bool = False

    @classmethod
    def prior_correction(cls, pos_weight: float) -> Calibration:
        return cls(1.0, -math.log(pos_weight))

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, ranks: np.ndarray | None = None) -> Calibration:
        """A (nearly unregularised) logistic regression on the logits, and the log-ranks when given."""
        from sklearn.linear_model import LogisticRegression

        features = features_of(logits, ranks)
        model = LogisticRegression(C=1e4, max_iter=1000).fit(features, labels)
        rank_weight = float(model.coef_[0, 1]) if ranks is not None else 0.0
        return cls(float(model.coef_[0, 0]), float(model.intercept_[0]), rank_weight, True)

    def __call__(self, logits: np.ndarray, ranks: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        z = self.slope * np.asarray(logits, dtype=np.float64) + self.intercept
        if self.rank_weight:
            if ranks is None:
                raise ValueError("this calibration weighs the retrieval rank: pass ranks")
            z = z + self.rank_weight * np.log(np.asarray(ranks, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-z))


def features_of(logits: np.ndarray, ranks: np.ndarray | None) -> np.ndarray:
    columns = [np.asarray(logits, dtype=np.float64)]
    if ranks is not None:
        columns.append(np.log(np.asarray(ranks, dtype=np.float64)))
    return np.stack(columns, axis=1)
