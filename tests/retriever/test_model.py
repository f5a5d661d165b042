from __future__ import annotations

import numpy as np

from edurank.retriever.model import BiEncoder


def test_encode_parts_embeds_each_part_alone_and_leaves_empty_parts_nan(bundled_encoder: BiEncoder) -> None:
    rows = [("Adding fractions", None, "Student answer: 3/7"), ("Photosynthesis", "Biology > Plants", "  ")]
    vectors = bundled_encoder.encode_parts(rows)
    assert vectors.shape == (2, 3, bundled_encoder.dimension)
    assert np.isnan(vectors[0, 1]).all() and np.isnan(vectors[1, 2]).all()
    alone = bundled_encoder.encode(["Adding fractions", "Biology > Plants"])
    assert np.allclose(vectors[0, 0], alone[0], atol=1e-5) and np.allclose(vectors[1, 1], alone[1], atol=1e-5)
    served = bundled_encoder.encode_parts(rows, bundled_encoder.embed)  # the service's batched embed
    assert np.allclose(np.nan_to_num(served), np.nan_to_num(vectors), atol=1e-5)
