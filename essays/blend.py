"""Blending the members' scores with per-trait weights fitted on out-of-fold predictions.

Per trait the weights are non-negative and sum to one (a convex mix), found by least squares on the OOF
scores. Six traits x a handful of members is few enough parameters that fitting on all OOF rows barely
flatters the blended figure; the trainer also reports every member alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from edurank.essays.data import TRAITS


@dataclass
class Blend:
    members: list[str]
    weights: np.ndarray  # (traits, members), each row on the simplex

    def apply(self, predictions: dict[str, np.ndarray]) -> np.ndarray:
        stacked = np.stack([predictions[name] for name in self.members], axis=-1)  # (essays, traits, members)
        return (stacked * self.weights[None]).sum(-1)

    def to_dict(self) -> dict[str, Any]:
        return {"members": self.members,
                "weights": {trait: dict(zip(self.members, map(float, row), strict=True))
                            for trait, row in zip(TRAITS, self.weights, strict=True)}}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Blend:
        members = list(values["members"])
        return cls(members, np.array([[values["weights"][t][m] for m in members] for t in TRAITS]))


def fit_blend(predictions: dict[str, np.ndarray], truth: np.ndarray, members: Sequence[str] | None = None) -> Blend:
    """Convex weights per trait minimising the squared error of the mix on the given (OOF) rows."""
    members = list(members or predictions)
    weights = np.zeros((truth.shape[1], len(members)))
    for trait in range(truth.shape[1]):
        columns = np.stack([predictions[name][:, trait] for name in members], axis=1).astype(np.float64)
        target = truth[:, trait].astype(np.float64)
        result = minimize(lambda w, c=columns, t=target: float(np.mean((c @ w - t) ** 2)),
                          np.full(len(members), 1 / len(members)), method="SLSQP",
                          bounds=[(0.0, 1.0)] * len(members),
                          constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0},))
        weights[trait] = np.clip(result.x, 0, None) / np.clip(result.x, 0, None).sum()
    return Blend(members, weights)
