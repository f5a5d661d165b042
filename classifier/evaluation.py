"""MAP@k of ranked labels (the task's metric is MAP@3): each row has one true label; a hit at rank r
scores 1/r, a miss 0, and rows are averaged."""

from __future__ import annotations

from collections.abc import Sequence


def map_at_k(truth: Sequence[str], ranked: Sequence[Sequence[str]], k: int = 3) -> float:
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
