from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edurank.layers import Trunk
from edurank.reranker.calibration import Calibration
from edurank.reranker.cross_encoder.backends import TorchPairRunner
from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.reranker.decision import DecisionRule
from edurank.training.trunk_cache import TrunkCache


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
    ranked = Reranker(TorchPairRunner(fresh.model), fresh.tokenizer, fresh.path, fresh.fingerprint,
                      PairFormat(8, 8, rank_feature=True))
    assert ranked.pairs([("a",)], [("b",)], [3])[0][1] == "rank 3 | b"
    with pytest.raises(ValueError, match="ranks"):
        ranked.pairs([("a",)], [("b",)])


def test_save_and_load_keep_format_calibration_and_rule(fresh: Reranker, tmp_path: Path) -> None:
    fresh.calibration = Calibration(slope=2.0, intercept=-1.0, fitted=True)
    fresh.rule = DecisionRule(0.3, 7, 1, True)
    fresh.save(tmp_path)
    loaded = Reranker.load(tmp_path)
    assert loaded.format == fresh.format and loaded.calibration == fresh.calibration and loaded.rule == fresh.rule
    items = [(("Triangles",), ("Area of a triangle",), 1), (("Cells",), ("Photosynthesis",), 2)]
    assert np.allclose(loaded.scores(items), fresh.scores(items), atol=1e-5)
    assert np.allclose(loaded.probabilities(items), fresh.calibration(fresh.scores(items)))


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


def test_cached_trunk_states_give_the_full_models_logits(fresh: Reranker, tmp_path: Path) -> None:
    """Training on cached pair states (segments kept) must score exactly what the served model scores."""
    pairs = fresh.pairs([("Fractions", "Maths"), ("Area",), ("Angles", None, "in a triangle")],
                        [("Adding fractions", None, "1/2 + 1/4"), ("Area of a rectangle",), ("Sum of angles",)])
    cache = TrunkCache.build(Trunk(fresh.model.encoder, 4), 384, fresh.tokenizer, pairs, fresh.format.max_length,
                             tmp_path / "pairs.npy")
    rows = [2, 0, 1]
    hidden, mask = cache.batch(rows)
    with torch.inference_mode():
        cached = fresh.model.from_layer(4, hidden, mask, cache.segments(rows)).numpy()
    assert np.allclose(cached, fresh.logits([pairs[r] for r in rows]), atol=2e-2)
    assert cache.segments([1]).max() == 1 and TrunkCache.build(None, 384, None, pairs, 0, tmp_path / "pairs.npy") \
        .segment_ids is not None  # a second build reuses the files, segments included


def test_late_interaction_layers_read_each_text_alone_and_cache_like_the_full_model(tmp_path: Path) -> None:
    late = Reranker.load(None, PairFormat(topic_tokens=16, content_tokens=24))
    late.model.isolated_layers = 6
    captured: dict[str, torch.Tensor] = {}
    head = late.model.head

    def capturing_head(hidden: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        captured["hidden"] = hidden
        return head(hidden, mask, types)

    late.model.head = capturing_head  # type: ignore[method-assign]
    pair = late.pairs([("Fractions", "Maths")], [("Adding fractions", None, "1/2 + 1/4")])
    late.logits(pair)
    alone = late.tokenizer([pair[0][0]], return_tensors="pt")
    with torch.inference_mode():
        topic = late.model.encoder(**alone).last_hidden_state[0]
    assert torch.allclose(captured["hidden"][0, :topic.shape[0]], topic, atol=1e-4)  # the content never leaked in

    late.model.head = head
    late.model.isolated_layers = 4
    pairs = pair + late.pairs([("Area",)], [("Area of a rectangle",)])
    trunk = Trunk(late.model.encoder, 4)
    cache = TrunkCache.build(lambda ids, mask, types: trunk(ids, late.model.layer_mask(0, mask, types), types), 384,
                             late.tokenizer, pairs, late.format.max_length, tmp_path / "late.npy")
    hidden, mask = cache.batch([0, 1])
    with torch.inference_mode():
        cached = late.model.from_layer(4, hidden, mask, cache.segments([0, 1])).numpy()
    assert np.allclose(cached, late.logits(pairs), atol=2e-2)
    late.save(tmp_path / "saved")
    assert Reranker.load(tmp_path / "saved").model.isolated_layers == 4
