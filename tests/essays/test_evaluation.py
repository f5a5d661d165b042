from __future__ import annotations

import numpy as np
import pytest

from edurank.essays.blend import Blend, fit_blend
from edurank.essays.evaluation import mcrmse, score_report, trait_rmse


def test_mcrmse_is_the_mean_of_per_trait_rmse() -> None:
    truth = np.array([[1.0, 2.0], [3.0, 4.0]])
    predicted = np.array([[2.0, 2.0], [3.0, 2.0]])  # errors: trait 0 (1, 0), trait 1 (0, 2)
    assert trait_rmse(truth, predicted).tolist() == pytest.approx([np.sqrt(0.5), np.sqrt(2.0)])
    assert mcrmse(truth, predicted) == pytest.approx((np.sqrt(0.5) + np.sqrt(2.0)) / 2)


def test_report_has_per_trait_figures_and_the_mean_baseline() -> None:
    truth = np.tile(np.array([[2.0], [4.0]]), (1, 6))
    report = score_report(truth, truth)
    assert report["mcrmse"] == 0 and report["mean_baseline_mcrmse"] == 1.0 and len(report["rmse"]) == 6


def test_blend_finds_the_better_member_per_trait() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 5, size=(200, 6))
    good, noisy = truth.copy(), truth + rng.normal(0, 1, size=truth.shape)
    good[:, 3] += rng.normal(0, 1, size=200)  # trait 3: `noisy` is as bad; elsewhere `good` is exact
    blend = fit_blend({"good": good, "noisy": noisy}, truth)
    assert blend.weights.sum(axis=1) == pytest.approx(np.ones(6))
    assert (blend.weights >= 0).all() and blend.weights[0, 0] > 0.99 and 0.3 < blend.weights[3, 0] < 0.7
    again = Blend.from_dict(blend.to_dict())
    assert np.allclose(again.apply({"good": good, "noisy": noisy}), blend.apply({"good": good, "noisy": noisy}))
