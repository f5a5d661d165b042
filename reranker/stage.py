"""The one interface both second stages serve behind: the cross-encoder (`cross_encoder.model.Reranker`, over
(topic, content, rank) items) and the LightGBM ranker (`lightgbm.model.Ranker`, over feature rows). Each turns
its candidates into raw scores, calibrates them (`calibration.Calibration`) and carries the decision rule tuned
on its out-of-fold probabilities (`decision.DecisionRule`); the recommend pipeline asks no more of either."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from edurank.artifacts import Manifest
from edurank.reranker.calibration import Calibration
from edurank.reranker.decision import DecisionRule

Candidates = TypeVar("Candidates", contravariant=True)


@runtime_checkable
class SecondStage(Protocol[Candidates]):
    """A trained second stage: raw scores -> calibrated probabilities -> its tuned rule's cut."""

    KIND: ClassVar[str]  # its artifact kind
    calibration: Calibration
    rule: DecisionRule
    manifest: Manifest | None

    def scores(self, candidates: Candidates, *args: Any) -> np.ndarray:
        """Raw scores (log-odds before calibration), one per candidate, in their order."""
        ...

    def probabilities(self, candidates: Candidates, *args: Any) -> np.ndarray:
        """`calibration` of `scores`: what the rule cuts."""
        ...
