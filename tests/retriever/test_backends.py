"""The torch embedder: served vectors come from eval mode whatever mode the model is in."""

from __future__ import annotations

import numpy as np

from edurank.retriever.model import BiEncoder

TEXTS = ["Adding fractions with unlike denominators", "Photosynthesis in plants", "Area of a triangle"]


def test_a_freshly_loaded_encoder_embeds_without_dropout() -> None:
    encoder = BiEncoder.load(None)
    first, second = encoder.embed(TEXTS), encoder.embed(TEXTS)
    assert np.array_equal(first, second)
    reference = encoder.model.encode(TEXTS, normalize_embeddings=True)
    assert np.abs(first - reference).max() < 1e-5


def test_a_model_under_training_embeds_in_eval_mode_and_stays_in_training() -> None:
    encoder = BiEncoder.load(None)
    expected = encoder.embed(TEXTS)
    encoder.model.train()
    assert np.abs(encoder.embed(TEXTS) - expected).max() < 1e-6
    assert encoder.model.training
