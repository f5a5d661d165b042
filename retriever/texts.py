"""The texts the encoder sees: topic = title | breadcrumbs | description; content = title | description | text.

Texts are cut by tokens, not characters: each part gets a fair share of the token budget and what a
short part leaves unused goes to the longer ones, so a long question title cannot push the description
(often the most telling part) out of the window.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from transformers import PreTrainedTokenizerBase

from edurank.retriever.catalog import Catalog

SEPARATOR = " | "


def share_budget(lengths: Sequence[int], budget: int) -> list[int]:
    """Water-filling: give each part min(its length, an equal share of what is left), shortest first."""
    take = [0] * len(lengths)
    remaining = max(budget, 0)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for left, index in zip(range(len(order), 0, -1), order, strict=True):
        take[index] = min(lengths[index], remaining // left)
        remaining -= take[index]
    return take


class TextBuilder:
    """Joins a row's parts and truncates them to `max_tokens` of the given tokenizer (specials included)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def build(self, rows: Sequence[Sequence[str | None]]) -> list[str]:
        parts = [[p for p in row if p] for row in rows]
        flat = [p for row in parts for p in row]
        offsets = self.tokenizer(flat, add_special_tokens=False, return_offsets_mapping=True,
                                 verbose=False)["offset_mapping"] \
            if flat else []
        texts, cursor = [], 0
        for row in parts:
            spans = offsets[cursor:cursor + len(row)]
            cursor += len(row)
            # two special tokens ([CLS], [SEP]) plus roughly one token per separator
            budget = self.max_tokens - 2 - max(len(row) - 1, 0)
            take = share_budget([len(s) for s in spans], budget)
            cut = [part if n == len(span) else part[:span[n - 1][1]] if n else ""
                   for part, span, n in zip(row, spans, take, strict=True)]
            texts.append(SEPARATOR.join(c for c in cut if c))
        return texts


def topic_parts(topics: pl.DataFrame) -> list[tuple[str | None, ...]]:
    return list(topics.select("title", "breadcrumbs", "description").iter_rows())


def content_parts(content: pl.DataFrame) -> list[tuple[str | None, ...]]:
    """Title, description, text; a title that merely repeats the start of the text is dropped."""
    rows = []
    for title, description, text in content.select("title", "description", "text").iter_rows():
        if title and text and text.startswith(title):
            title = None
        rows.append((title, description, text))
    return rows


def topic_texts(catalog: Catalog, builder: TextBuilder, topics: pl.DataFrame | None = None) -> list[str]:
    return builder.build(topic_parts(catalog.topics if topics is None else topics))


def content_texts(catalog: Catalog, builder: TextBuilder) -> list[str]:
    return builder.build(content_parts(catalog.content))
