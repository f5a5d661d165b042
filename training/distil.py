"""`edurank distil`, the part every family shares: one student in place of a served ensemble, kept only when
its out-of-fold figure stays within `max_delta` of the ensemble's on the same rows.

The student learns from the teacher's soft predictions over the training rows mixed with the labels
(`soft_weight`): the classifier's, every member's probabilities at a temperature (KL); the essay scorer's,
its stored out-of-fold blended scores (the teacher's fine-tuning loss: RMSE per trait, or SmoothL1).
Students are cross-fitted on the teacher's own folds, so each held-out row is predicted by a student that
never trained on it; but the soft targets of its training rows come from teacher models that did see the
held-out fold, so the students' figure may lean slightly optimistic. Only a kept student is trained on every
row (as long as the fold students trained) and published, with the figures and its speed against the
teacher in the manifest.

`distil` takes those steps for every family; a family's `Student` says how its student trains, is scored
and is served. Its options, `DistilConfig`, are in training/config.py with every job's.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from edurank.artifacts import Manifest, ModelRef, fresh_dir, hash_files, hash_json, publish_artifact, staging_dir
from edurank.backends.config import TORCH
from edurank.backends.export import side_by_side
from edurank.errors import InputError
from edurank.training.config import DistilConfig
from edurank.training.loop import FoldResult, run_fold

T = TypeVar("T")


def refuse_unkept(kept: bool, what: str, figures: str) -> None:
    """A student past `max_delta`: say so with the figures; nothing is published."""
    if not kept:
        raise InputError(f"{what}: the student is not kept ({figures}); nothing was published")


def checked_teacher(path: Path, manifest: Manifest, data: Path, read_oof: Callable[[Path], T], figures: str) -> T:
    """The teacher's stored out-of-fold predictions (`read_oof` refuses a teacher without any), once it is known
    to be a torch model trained on `data`; an export or other data is refused with what to give instead."""
    if manifest.params.get("backend", TORCH) != TORCH:
        raise InputError(f"--teacher {path}: an {manifest.params['backend']} export; give the model it was "
                         "exported from")
    stored = read_oof(path)
    if manifest.data.get("hash") != hash_files([data]):
        raise InputError(f"--data {data}: not the data the teacher {manifest.version} was trained on (its folds "
                         f"and out-of-fold {figures} would not line up)")
    return stored


@dataclass(frozen=True)
class Figure:
    """The out-of-fold figure a student is compared on with its teacher."""

    name: str  # as messages say it: "MCRMSE"
    key: str  # in the manifest's metrics: "mcrmse" (oof_mcrmse, teacher_oof_mcrmse, mcrmse_delta)
    higher_is_better: bool

    def kept(self, student: float, teacher: float, max_delta: float) -> bool:
        if self.higher_is_better:
            return student >= teacher - max_delta
        return student <= teacher + max_delta


class Servable(Protocol):
    def save(self, directory: Path) -> None: ...


class Student(ABC):
    """One family's side of `edurank distil`: how its student trains, how it and the teacher are scored, what is
    served and published. `distil` takes the steps every family shares."""

    kind: str  # the artifact kind of teacher and student
    name: str  # the family, in the log: "essay scorer"
    items: str  # what its rows are, in messages and metrics: "essays", "rows"
    figure: Figure
    log: logging.Logger  # the family's logger
    details: dict[str, Any] | None = None  # the published manifest's details
    metrics: dict[str, Any] = {}  # what the family adds to the published manifest's metrics

    @abstractmethod
    def train(self, directory: Path, train: np.ndarray, valid: np.ndarray, fold: int | None) \
            -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Train a student in `directory` on rows `train`: its predictions on rows `valid` and its history.
        `fold` None: the final student, on every row."""

    def before_final(self, folds: Sequence[FoldResult]) -> None:
        """What the fold students tell the final one (how long to train, where they stopped early)."""
        return None

    @abstractmethod
    def scores(self, rows: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
        """The students' figure over `rows` (`predicted`: their out-of-fold predictions there), the teacher's."""

    @abstractmethod
    def served(self, directory: Path) -> Servable:
        """The model published: the final student, trained in `directory`."""

    @abstractmethod
    def speed(self, distilled: Any) -> dict[str, float]:
        """Teacher and student served on the same items, see `speed_against`."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The final student's training config, for the manifest."""


def speed_against(teacher: Callable[[list[T]], object], student: Callable[[list[T]], object], sample: list[T],
                  warm: int) -> dict[str, float]:
    """Items per second of the teacher and the student on the same `sample` (after a warm-up on its first
    `warm`), and the speed-up, as the manifest records them."""
    teacher(sample[:warm]), student(sample[:warm])  # warm-up
    _, _, speed = side_by_side(lambda: teacher(sample), lambda: student(sample), len(sample))
    return {"teacher_items_per_s": speed["torch_items_per_s"], "items_per_s": speed["items_per_s"],
            "speedup": speed["speedup"]}


def distil(student: Student, teacher: Path, manifest: Manifest, out: Path, config: DistilConfig,
           folds: np.ndarray, covered: np.ndarray) -> Path:
    """Cross-fit students on the teacher's folds that its stored out-of-fold predictions cover (rows `covered`;
    the first `train_folds` of them), compare their figure with the teacher's on the same rows, refuse one past
    `max_delta`; else train the student on every row, time both and publish it (a resumable run: finished
    students are kept in the staging directory)."""
    chosen = sorted(set(folds[covered].tolist()))
    chosen = chosen[:config.train_folds] if config.train_folds else chosen
    run_hash = hash_json({"teacher": manifest.weights, "config": asdict(config), "data": manifest.data["hash"]})
    with staging_dir(out, f"distil-{run_hash[:12]}", keep_on_error=True) as work:
        held_out, results = [], []
        for fold in chosen:
            train, valid = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            results.append(run_fold(work / "students" / f"fold{fold}", f"student fold {fold}",
                                    lambda d, t=train, v=valid, f=fold: student.train(d, t, v, f)))
            held_out.append(valid)
        rows = np.concatenate(held_out)
        score, teacher_score = student.scores(rows, np.concatenate([result.predictions for result in results]))
        figure = student.figure
        figures = (f"out-of-fold {figure.name} {score:.4f} against the teacher's {teacher_score:.4f} on "
                   f"{len(rows)} {student.items}")
        student.log.info("distilled %s: %s", student.name, figures)
        refuse_unkept(figure.kept(score, teacher_score, config.max_delta), f"--max-delta {config.max_delta}", figures)

        student.before_final(results)
        final = run_fold(work / "students" / "all", f"student (all {student.items})",
                         lambda d: student.train(d, np.arange(len(folds)), np.empty(0, dtype=np.int64), None))
        distilled = student.served(final.directory)
        speed = student.speed(distilled)
        artifact = fresh_dir(work / "artifact")
        distilled.save(artifact)
        return publish_artifact(
            artifact, out, run_hash, kind=student.kind, base_model=manifest.base_model, data=manifest.data,
            params={**student.params(), "distil": asdict(config)}, details=student.details,
            metrics={"distilled_from": manifest.version, f"oof_{student.items}": len(rows),
                     f"oof_{figure.key}": round(score, 5), f"teacher_oof_{figure.key}": round(teacher_score, 5),
                     f"{figure.key}_delta": round(score - teacher_score, 5), **student.metrics, **speed},
            depends=[ModelRef(str(teacher), manifest.weights, student.kind, manifest.version)])
