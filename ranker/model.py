"""The learning-to-rank second stage: a LightGBM model over the hybrid candidates' features.

A `ranker` artifact holds the booster in LightGBM's own text format (`model.lgbm`, no pickle), `ranker.json`
(feature groups and names, candidate counts, vocabularies, Platt calibration of the raw score, decision
rule, the fingerprint of the cross-encoder whose logits the `cross` group reads, if it has one) and
`graph.parquet` (the training correlations the graph features read). Its manifest depends on the retrievers
whose candidates it learnt from (and that cross-encoder).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from edurank.artifacts import Manifest, atomic_write_text, open_artifact
from edurank.errors import ArtifactMismatchError
from ranker.features import FEATURE_GROUPS, Context, Graph, build_features, feature_names
from reranker.decision import DecisionRule
from reranker.model import Calibration
from retriever.hybrid import CandidateConfig

MODEL_FILE = "model.lgbm"
SETTINGS_FILE = "ranker.json"
GRAPH_FILE = "graph.parquet"


@dataclass
class Ranker:
    """A trained booster with everything needed to rebuild its inputs and turn its scores into decisions."""

    KIND = "ranker"
    booster: lgb.Booster
    groups: tuple[str, ...]
    candidates: CandidateConfig
    vocabularies: dict[str, list[str]]
    graph: Graph
    calibration: Calibration = field(default_factory=Calibration)
    rule: DecisionRule = field(default_factory=DecisionRule)
    manifest: Manifest | None = None
    cross_encoder: str | None = None  # fingerprint of the reranker the cross group needs at serving

    @property
    def features(self) -> list[str]:
        return feature_names(self.groups)

    def context(self, content: pl.DataFrame) -> Context:
        """The feature context over the served index's content metadata (see ranker.features)."""
        return Context(content, self.graph, self.vocabularies)

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        return frame.select(self.features).cast(pl.Float64).to_numpy()

    def scores(self, frame: pl.DataFrame) -> np.ndarray:
        """Raw booster scores (log-odds for a binary model) of feature rows."""
        if not len(frame):
            return np.empty(0)
        return np.asarray(self.booster.predict(self.matrix(frame), raw_score=True), dtype=np.float64)

    def probabilities(self, frame: pl.DataFrame) -> np.ndarray:
        return self.calibration(self.scores(frame))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """Per row, each feature's additive contribution to the raw score (SHAP values; the last column is
        the expected value)."""
        return np.asarray(self.booster.predict(self.matrix(frame), pred_contrib=True), dtype=np.float64)

    def cross_encoder_problem(self, loaded: str | None) -> str | None:
        """Why this ranker cannot be served next to the cross-encoder with fingerprint `loaded` (None: none
        loaded), or None when it can: its cross group reads one particular cross-encoder's logits."""
        if self.cross_encoder is None or loaded == self.cross_encoder:
            return None
        return (f"the ranker reads the logits of the cross-encoder {self.cross_encoder[:12]}, and "
                f"{loaded[:12] if loaded else 'none'} is loaded")

    def featurise(self, candidates: pl.DataFrame, queries: pl.DataFrame, content: pl.DataFrame) -> pl.DataFrame:
        return build_features(candidates, queries, self.context(content), self.groups)

    def save(self, directory: Path) -> None:
        self.booster.save_model(str(directory / MODEL_FILE))
        self.graph.links.write_parquet(directory / GRAPH_FILE)
        atomic_write_text(directory / SETTINGS_FILE, json.dumps(
            {"groups": list(self.groups), "features": self.features, "candidates": asdict(self.candidates),
             "vocabularies": self.vocabularies, "calibration": asdict(self.calibration),
             "rule": self.rule.to_dict(), "cross_encoder": self.cross_encoder}, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Ranker:
        directory, manifest = open_artifact(path, cls.KIND)
        settings: dict[str, Any] = json.loads((directory / SETTINGS_FILE).read_text())
        groups = tuple(settings["groups"])
        unknown = [g for g in groups if g not in FEATURE_GROUPS]
        if unknown:
            raise ArtifactMismatchError(f"{directory}: feature groups {unknown} are unknown to this edurank")
        booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        if booster.feature_name() != feature_names(groups) or settings["features"] != feature_names(groups):
            raise ArtifactMismatchError(f"{directory}: the model's features differ from what this edurank computes "
                                        "for its groups; retrain it with `edurank train ranker`")
        return cls(booster, groups, CandidateConfig(**settings["candidates"]), settings["vocabularies"],
                   Graph(pl.read_parquet(directory / GRAPH_FILE)), Calibration(**settings["calibration"]),
                   DecisionRule(**settings["rule"]), manifest, settings.get("cross_encoder"))
