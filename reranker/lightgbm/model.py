"""The learning-to-rank second stage: a LightGBM model over the hybrid candidates' features.

A `ranker` artifact holds the booster in LightGBM's own text format (`model.lgbm`, no pickle), `ranker.json`
(feature groups and names, candidate counts, vocabularies, Platt calibration of the raw score, decision
rule, the fingerprints of the cross-encoder whose logits the `cross` group reads and of the companion encoder
whose cosine the `companion` group reads, if it has them) and
`graph.parquet` (the training correlations the graph features read). Its manifest depends on the retrievers
whose candidates it learnt from (and those models).
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
from edurank.backends.config import POOLS
from edurank.errors import ArtifactMismatchError
from edurank.reranker.calibration import Calibration
from edurank.reranker.decision import DecisionRule
from edurank.reranker.lightgbm.config import FEATURE_GROUPS
from edurank.reranker.lightgbm.features import Context, Graph, ItemVectors, build_features, feature_names
from edurank.retriever.config import CandidateConfig

MODEL_FILE = "model.lgbm"
SETTINGS_FILE = "ranker.json"
GRAPH_FILE = "graph.parquet"
# below this many rows one thread predicts: waking LightGBM's OpenMP pool for one topic's 80 candidates cost
# 1.7-18 ms right after an ONNX Runtime call on 2 cores against 0.2-1.7 ms on the calling thread (bench/README.md)
PARALLEL_ROWS = 2048


def predict_threads(rows: int) -> int:
    """LightGBM's threads for a prediction over `rows` rows: one for a request's few, else the shared pool size."""
    return 1 if rows < PARALLEL_ROWS else POOLS.threads


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
    companion: str | None = None  # fingerprint of the encoder whose cosine the companion group reads

    @property
    def features(self) -> list[str]:
        return feature_names(self.groups)

    def context(self, content: pl.DataFrame, neighbours: pl.DataFrame | None = None,
                item_vectors: ItemVectors | None = None, part_vectors: np.ndarray | None = None) -> Context:
        """The feature context over the served index's content metadata and vectors, the queries' nearest
        topics and their parts' vectors (see edurank.reranker.lightgbm.features)."""
        return Context(content, self.graph, self.vocabularies, neighbours, item_vectors, part_vectors)

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        return frame.select(self.features).cast(pl.Float64).to_numpy()

    def scores(self, frame: pl.DataFrame) -> np.ndarray:
        """Raw booster scores (log-odds for a binary model) of feature rows."""
        if not len(frame):
            return np.empty(0)
        return np.asarray(self.booster.predict(self.matrix(frame), raw_score=True,
                                               num_threads=predict_threads(len(frame))), dtype=np.float64)

    def probabilities(self, frame: pl.DataFrame) -> np.ndarray:
        return self.calibration(self.scores(frame))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """Per row, each feature's additive contribution to the raw score (SHAP values; the last column is
        the expected value)."""
        return np.asarray(self.booster.predict(self.matrix(frame), pred_contrib=True,
                                               num_threads=predict_threads(len(frame))), dtype=np.float64)

    def cross_encoder_problem(self, loaded: str | None) -> str | None:
        """Why this ranker cannot be served next to the cross-encoder with fingerprint `loaded` (None: none
        loaded), or None when it can: its cross group reads one particular cross-encoder's logits."""
        if self.cross_encoder is None or loaded == self.cross_encoder:
            return None
        return (f"the ranker reads the logits of the cross-encoder {self.cross_encoder[:12]}, and "
                f"{loaded[:12] if loaded else 'none'} is loaded")

    def companion_model(self) -> str | None:
        """Where the companion encoder it was trained with was (its manifest's dependency), if it reads one."""
        if self.companion is None or self.manifest is None:
            return None
        return next((d.path for d in self.manifest.depends if d.fingerprint == self.companion), None)

    def companion_problem(self, stored: str | None, loaded: str | None) -> str | None:
        """Why this ranker cannot be served over an index whose companion vectors come from the encoder with
        fingerprint `stored`, with the encoder `loaded` embedding queries (None: none), or None when it can."""
        if self.companion is None:
            return None
        for what, fingerprint in (("the index holds", stored), ("the loaded companion encoder is", loaded)):
            if fingerprint != self.companion:
                return (f"the ranker reads the cosine of the companion encoder {self.companion[:12]}, and {what} "
                        f"{fingerprint[:12] if fingerprint else 'none'}")
        return None

    def featurise(self, candidates: pl.DataFrame, queries: pl.DataFrame, content: pl.DataFrame,
                  neighbours: pl.DataFrame | None = None, item_vectors: ItemVectors | None = None,
                  part_vectors: np.ndarray | None = None) -> pl.DataFrame:
        return build_features(candidates, queries, self.context(content, neighbours, item_vectors, part_vectors),
                              self.groups)

    def save(self, directory: Path) -> None:
        self.booster.save_model(str(directory / MODEL_FILE))
        self.graph.links.write_parquet(directory / GRAPH_FILE)
        atomic_write_text(directory / SETTINGS_FILE, json.dumps(
            {"groups": list(self.groups), "features": self.features, "candidates": asdict(self.candidates),
             "vocabularies": self.vocabularies, "calibration": asdict(self.calibration),
             "rule": self.rule.to_dict(), "cross_encoder": self.cross_encoder, "companion": self.companion},
            indent=2))

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
                   DecisionRule(**settings["rule"]), manifest, settings.get("cross_encoder"), settings.get("companion"))
