from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reranker.decision import DecisionRule
from reranker.model import Calibration, PairFormat, Reranker


@pytest.fixture(scope="module")
def fresh() -> Reranker:
    return Reranker.load(None, PairFormat(topic_tokens=16, content_tokens=24))


def test_prior_correction_undoes_the_positive_weight() -> None:
    calibration = Calibration.prior_correction(4.0)
    # a weighted model's logit of log(4) means even odds before weighting
    assert np.isclose(calibration(np.array([np.log(4.0)]))[0], 0.5)


def test_platt_fit_is_monotone_and_calibrated_on_its_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(4000) < 0.2
    logits = rng.normal(0, 1, 4000) + 2.5 * labels
    calibration = Calibration.fit(logits, labels)
    probabilities = calibration(logits)
    assert calibration.fitted and calibration.slope > 0
    assert abs(probabilities.mean() - labels.mean()) < 0.01


def test_pairs_fit_the_token_budget(fresh: Reranker) -> None:
    long = "word " * 300
    pairs = fresh.pairs([("Fractions", "Maths > Numbers", long)], [("Adding fractions", None, long)])
    tokens = fresh.tokenizer(*pairs[0])["input_ids"]
    assert len(tokens) <= fresh.format.max_length
    assert pairs[0][0].startswith("Fractions | Maths > Numbers | word")


def test_rank_feature_needs_ranks(fresh: Reranker) -> None:
    ranked = Reranker(fresh.model, fresh.tokenizer, fresh.path, fresh.fingerprint, PairFormat(8, 8, rank_feature=True))
    assert ranked.pairs([("a",)], [("b",)], [3])[0][1] == "rank 3 | b"
    with pytest.raises(ValueError, match="ranks"):
        ranked.pairs([("a",)], [("b",)])


def test_save_and_load_keep_format_calibration_and_rule(fresh: Reranker, tmp_path: Path) -> None:
    fresh.calibration = Calibration(slope=2.0, intercept=-1.0, fitted=True)
    fresh.rule = DecisionRule(0.3, 7, 1, True)
    fresh.save(tmp_path)
    loaded = Reranker.load(tmp_path)
    assert loaded.format == fresh.format and loaded.calibration == fresh.calibration and loaded.rule == fresh.rule
    pairs = fresh.pairs([("Triangles",), ("Cells",)], [("Area of a triangle",), ("Photosynthesis",)])
    assert np.allclose(loaded.logits(pairs), fresh.logits(pairs), atol=1e-5)
    assert np.allclose(loaded.probabilities(pairs), fresh.calibration(fresh.logits(pairs)))


def test_a_rank_aware_calibration_needs_ranks_and_lowers_later_ranks() -> None:
    rng = np.random.default_rng(1)
    ranks = rng.integers(1, 33, 5000)
    labels = rng.random(5000) < 0.5 / ranks
    logits = rng.normal(0, 1, 5000) + 1.5 * labels
    calibration = Calibration.fit(logits, labels, ranks)
    assert calibration.rank_weight < 0
    assert calibration(np.array([0.0]), [1])[0] > calibration(np.array([0.0]), [20])[0]
    with pytest.raises(ValueError, match="ranks"):
        calibration(np.array([0.0]))
