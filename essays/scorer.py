"""The trained essay scorer as served and evaluated: one `essays` artifact holding the fast path (frozen
encoder features -> SVR / ridge), the fine-tuned fold models (averaged), or both, and the blend weights.

Stages are timed: `tokenise` (windows), `model` (encoder passes), `regress` (classical regressors, blend).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from edurank.artifacts import Manifest, covered_oof, open_artifact
from edurank.backends.base import Backend, backend_of, open_served
from edurank.backends.config import TORCH
from edurank.errors import InputError
from edurank.essays.blend import Blend
from edurank.essays.data import clip_scores
from edurank.essays.fast import FastModel
from edurank.essays.model import EssayModel
from edurank.timing import Timer, no_timer

FAST_DIR, FOLDS_DIR, BLEND = "fast", "finetuned", "blend.json"
FINETUNED = "finetuned"
OOF = "oof.parquet"


@dataclass
class EssayScorer:
    """The served essay scorer. Its artifact layout:

        <version>/fast/             the fast path (frozen encoder, its config, one joblib per member)
        <version>/finetuned/fold{i}/  each fine-tuned fold model (HF encoder + pooling and head)
        <version>/blend.json        per-trait blend weights over the members
        <version>/oof.parquet       out-of-fold scores of every training essay (written by the trainer)

    An export (`edurank export`, manifest param `backend`) has the same layout with each encoder replaced by
    an ONNX graph beside its tokenizer: the fast path's computes the windows' layer means, each fold's its
    windows' scores.
    """

    KIND = "essays"
    fast: FastModel | None
    folds: list[EssayModel]
    blend: Blend
    path: Path | None = None
    manifest: Manifest | None = None

    @classmethod
    def load(cls, path: str | Path, backend: str | None = None) -> EssayScorer:
        """A scorer version or export (or artifact root); `backend` names an export whose manifest is not
        written yet."""
        path, manifest, backend = open_served(path, cls.KIND, backend)
        fast = FastModel.load(path / FAST_DIR, backend) if (path / FAST_DIR).is_dir() else None
        folds = [EssayModel.load(fold, backend) for fold in sorted((path / FOLDS_DIR).glob("fold*"))]
        blend = Blend.from_dict(json.loads((path / BLEND).read_text()))
        available = (set(fast.estimators) if fast else set()) | ({FINETUNED} if folds else set())
        if missing := set(blend.members) - available:
            raise InputError(f"{path}: the blend uses {', '.join(sorted(missing))}, which the artifact lacks")
        return cls(fast, folds, blend, path, manifest)

    def save(self, directory: Path, backend: str = TORCH) -> None:
        """The layout above; for an ONNX `backend`, the export's."""
        if self.fast is not None:
            self.fast.save(directory / FAST_DIR, backend)
        for fold, model in enumerate(self.folds):
            model.save(directory / FOLDS_DIR / f"fold{fold}", backend)
        (directory / BLEND).write_text(json.dumps(self.blend.to_dict(), indent=2))

    @property
    def version(self) -> str | None:
        return self.manifest.version if self.manifest is not None else None

    @property
    def runners(self) -> list[Backend]:
        """What runs on the backend: the fast path's encoder (its regressors are scikit-learn's), each fold."""
        return ([self.fast.extractor.runner] if self.fast is not None else []) + [fold.runner for fold in self.folds]

    @property
    def backend(self) -> str:
        return self.runners[0].backend if self.runners else backend_of(self.manifest)

    def warmup(self) -> None:
        for runner in self.runners:
            runner.warmup()

    def members(self, texts: Sequence[str], timer: Timer = no_timer) -> dict[str, np.ndarray]:
        """Raw scores of every member the blend uses, (essays, 6) each."""
        out: dict[str, np.ndarray] = {}
        if self.fast is not None:
            with timer("tokenise"):
                windows = self.fast.extractor.windows(texts)
            with timer("model"):
                dense = self.fast.extractor(texts, windows)
            with timer("regress"):
                out.update(self.fast.predict(texts, dense))
        if self.folds:
            with timer("tokenise"):
                windows = self.folds[0].make_windows(texts)  # every fold shares the base model's tokenizer
            with timer("model"):
                out[FINETUNED] = np.mean([model.predict(windows) for model in self.folds], axis=0)
        return out

    def score(self, texts: Sequence[str], timer: Timer = no_timer) -> np.ndarray:
        """(essays, 6) blended scores, clipped to [1, 5]."""
        members = self.members(texts, timer)
        with timer("regress"):
            return clip_scores(self.blend.apply(members))


def essay_artifact(path: str | Path) -> tuple[Path, Manifest]:
    """The version directory and manifest of an essay artifact (a version dir or its root), kind checked."""
    return open_artifact(path, EssayScorer.KIND)


def oof_predictions(path: Path) -> pl.DataFrame:
    """The artifact's stored out-of-fold scores (`text_id`, `blend_<trait>`, ...) of the essays they cover."""
    return covered_oof(path, OOF)
