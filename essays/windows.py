"""Covering a whole essay with a short-context encoder: overlapping token windows, never truncation.

An essay's tokens are cut into windows of `max_tokens` (special tokens included) whose starts are `stride`
tokens apart; the last window is aligned to the essay's end, so every token is seen and no window is short
unless the essay is. Models pool each window, then average the windows of an essay weighted by their
token counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from edurank.essays.config import WindowSpec


def split_ids(ids: Sequence[int], spec: WindowSpec) -> list[list[int]]:
    """Token ids (no special tokens) -> the body of each window."""
    body = spec.max_tokens - 2
    if len(ids) <= body:
        return [list(ids)]
    starts = list(range(0, len(ids) - body, spec.stride)) + [len(ids) - body]
    return [list(ids[start:start + body]) for start in starts]


@dataclass
class Windows:
    """All windows of a list of essays: `ids[i]` is window i with special tokens, `essay[i]` its essay."""

    ids: list[list[int]]
    essay: list[int]
    essays: int

    def batch(self, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """Padded input_ids / attention_mask for the given windows."""
        width = max(len(self.ids[row]) for row in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, :len(self.ids[row])] = torch.tensor(self.ids[row])
            mask[i, :len(self.ids[row])] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def essay_batches(self, essays_per_batch: int, order: Sequence[int] | None = None) -> list[list[int]]:
        """Groups of whole essays (window rows), so an essay's windows are always pooled together."""
        by_essay: list[list[int]] = [[] for _ in range(self.essays)]
        for row, essay in enumerate(self.essay):
            by_essay[essay].append(row)
        order = list(order) if order is not None else list(range(self.essays))
        return [[row for essay in order[start:start + essays_per_batch] for row in by_essay[essay]]
                for start in range(0, len(order), essays_per_batch)]


def make_windows(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], spec: WindowSpec) -> Windows:
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    prefix, suffix = special_tokens(tokenizer)
    ids: list[list[int]] = []
    essay: list[int] = []
    for index, tokens in enumerate(encoded):
        for body in split_ids(tokens, spec):
            ids.append(prefix + body + suffix)
            essay.append(index)
    return Windows(ids, essay, len(texts))


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a text ([CLS] / [SEP] for BERT), read off an empty input."""
    around = tokenizer("", add_special_tokens=True)["input_ids"]
    return around[:1], around[1:]


def pool_windows(vectors: torch.Tensor, mask: torch.Tensor, essay: torch.Tensor, essays: int) -> torch.Tensor:
    """(windows, d) window vectors -> (essays, d): each essay's windows averaged, weighted by token count."""
    weights = mask.sum(dim=1, keepdim=True).to(vectors.dtype)
    total = torch.zeros((essays, vectors.shape[1]), dtype=vectors.dtype, device=vectors.device)
    total.index_add_(0, essay, vectors * weights)
    count = torch.zeros((essays, 1), dtype=vectors.dtype, device=vectors.device).index_add_(0, essay, weights)
    return total / count.clamp(min=1)
