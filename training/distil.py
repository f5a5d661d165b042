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
"""

from __future__ import annotations

from dataclasses import dataclass

from edurank.errors import InputError
from edurank.options import option


@dataclass(frozen=True)
class DistilConfig:
    """`edurank distil`'s options."""

    soft_weight: float = option(0.9, "weight of the teacher's soft predictions in the loss (the rest: the labels)")
    temperature: float = option(5.0, "classifier: softmax temperature of teacher and student in the KL term")
    epochs: int | None = option(None, "student epochs (default: the teacher's)", minimum=1)
    train_folds: int | None = option(None, "cross-fit only the first N of the teacher's folds (exploring; the "
                                           "figures cover those folds)", minimum=1)
    max_delta: float = option(0.005, "keep the student only within this of the teacher's out-of-fold figure")
    speed_items: int = option(256, "items both models score to measure the speed-up", minimum=1)

    def __post_init__(self) -> None:
        if not 0.0 <= self.soft_weight <= 1.0:
            raise InputError(f"--soft-weight {self.soft_weight}: between 0 and 1")
        if self.temperature <= 0:
            raise InputError(f"--temperature {self.temperature}: must be positive")


def refuse_unkept(kept: bool, what: str, figures: str) -> None:
    """A student past `max_delta`: say so with the figures; nothing is published."""
    if not kept:
        raise InputError(f"{what}: the student is not kept ({figures}); nothing was published")
