"""Row folds: multilabel iterative stratification (essay traits) and single-label stratification."""

from __future__ import annotations

import numpy as np
import pytest

from edurank.errors import InputError
from edurank.folds import multilabel_folds, stratified_folds


def test_multilabel_folds_spread_the_traits_levels_better_than_chance() -> None:
    rng = np.random.default_rng(0)
    labels = np.clip(np.round(rng.normal(3.0, 0.7, size=(400, 6)) * 2) / 2, 1, 5)  # skewed like real scores
    folds = multilabel_folds(labels, 4, seed=1)
    assert np.bincount(folds).min() >= 97 and np.bincount(folds).max() <= 103

    def spread(assignment: np.ndarray) -> int:
        """Sum over traits and levels of (largest - smallest) count of that level in one fold."""
        return sum(int(np.ptp(np.bincount(assignment[labels[:, t] == level], minlength=4)))
                   for t in range(6) for level in np.unique(labels[:, t]))

    random_folds = rng.permutation(np.arange(400) % 4)
    assert spread(folds) < 0.6 * spread(random_folds)
    assert np.array_equal(folds, multilabel_folds(labels, 4, seed=1))


def test_stratified_folds_spread_each_label() -> None:
    labels = np.array(["a"] * 50 + ["b"] * 10 + ["c"] * 5)
    folds = stratified_folds(labels, 5, seed=3)
    for label in "abc":
        assert np.bincount(folds[labels == label], minlength=5).tolist() == [len(labels[labels == label]) // 5] * 5
    with pytest.raises(InputError, match="--folds 1"):
        stratified_folds(labels, 1)
