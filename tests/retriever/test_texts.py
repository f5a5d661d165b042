from __future__ import annotations

from edurank.retriever.texts import SEPARATOR, TextBuilder, content_parts, share_budget


def test_share_budget_gives_short_parts_all_and_splits_the_rest() -> None:
    assert share_budget([3, 100, 100], 53) == [3, 25, 25]
    assert share_budget([10, 20], 100) == [10, 20]
    assert share_budget([50], 0) == [0]


def test_builder_cuts_by_tokens_and_keeps_every_part(bundled_encoder) -> None:
    tokenizer = bundled_encoder.model.tokenizer
    long_title = "fractions " * 200
    text = TextBuilder(tokenizer, 32).build([(long_title, "Maths > Number", "Compare two fractions.")])[0]
    assert len(tokenizer(text)["input_ids"]) <= 32 + 2
    assert text.endswith(f"{SEPARATOR}Maths > Number{SEPARATOR}Compare two fractions.")


def test_builder_skips_empty_parts(bundled_encoder) -> None:
    builder = TextBuilder(bundled_encoder.model.tokenizer, 64)
    assert builder.build([("Title", None, ""), (None, None, None)]) == ["Title", ""]


def test_title_repeating_the_text_is_dropped() -> None:
    import polars as pl

    frame = pl.DataFrame({"title": ["What is 2+2?", "Other"], "description": [None, "d"],
                          "text": ["What is 2+2?\nOptions: 3, 4", "body"]})
    assert content_parts(frame) == [(None, None, "What is 2+2?\nOptions: 3, 4"), ("Other", "d", "body")]
