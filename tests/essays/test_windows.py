from __future__ import annotations

import pytest
import torch

from edurank.encoders import bundled_model_path
from edurank.essays.config import WindowSpec
from edurank.essays.windows import make_windows, pool_windows, split_ids


def test_windows_cover_every_token_and_end_aligned() -> None:
    spec = WindowSpec(max_tokens=10, stride=5)  # bodies of 8 tokens
    ids = list(range(21))
    windows = split_ids(ids, spec)
    assert windows[0] == list(range(8)) and windows[-1] == list(range(13, 21))
    assert sorted({t for w in windows for t in w}) == ids
    assert all(len(w) == 8 for w in windows)
    assert split_ids([1, 2], spec) == [[1, 2]]


def test_bad_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="stride"):
        WindowSpec(max_tokens=16, stride=15)


def test_make_windows_adds_special_tokens_and_groups_by_essay() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path())
    long_text = " ".join(["word"] * 50)
    windows = make_windows(tokenizer, ["short essay", long_text], WindowSpec(max_tokens=16, stride=10))
    assert windows.essay.count(0) == 1 and windows.essay.count(1) > 1
    assert all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id for ids in windows.ids)
    assert max(len(ids) for ids in windows.ids) == 16
    assert windows.essay_batches(1) == [[0], list(range(1, len(windows.ids)))]


def test_pool_windows_weights_by_token_count() -> None:
    vectors = torch.tensor([[1.0], [4.0], [10.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    pooled = pool_windows(vectors, mask, torch.tensor([0, 0, 1]), 2)
    assert pooled[:, 0].tolist() == pytest.approx([(3 * 1 + 1 * 4) / 4, 10.0])
