"""Both second stages serve behind one interface: what the recommend pipeline reads of either."""

from __future__ import annotations

import dataclasses

import pytest

from edurank.reranker.cross_encoder.model import Reranker
from edurank.reranker.lightgbm.model import Ranker
from edurank.reranker.stage import SecondStage


def members(cls: type) -> set[str]:
    """What an instance of a dataclass has: its fields and its class's attributes."""
    return {f.name for f in dataclasses.fields(cls)} | set(dir(cls))


@pytest.mark.parametrize("stage", [Reranker, Ranker])
def test_each_second_stage_has_everything_the_interface_names(stage: type) -> None:
    wanted = set(SecondStage.__annotations__) | {"scores", "probabilities"}
    assert wanted <= members(stage)
    assert stage.KIND in ("reranker", "ranker")


def test_a_loaded_cross_encoder_is_a_second_stage() -> None:
    fresh = Reranker.load(None)
    assert isinstance(fresh, SecondStage)
    items = [(("Fractions",), ("Adding fractions",), 1), (("Fractions",), ("Cells",), 2)]
    probabilities = fresh.probabilities(items)
    assert probabilities.shape == (2,) and ((0 < probabilities) & (probabilities < 1)).all()
