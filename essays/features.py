"""Features for the fast CPU path: frozen-encoder essay embeddings and cheap text statistics.

Embeddings are the masked token means of chosen hidden layers (lower layers carry more of the surface and
syntax that grammar and conventions are scored on), pooled over every window of the essay. The statistics
count what raters of conventions and grammar look at: length, sentence shape, punctuation and spacing,
capitalisation, contractions written without apostrophes, and words the encoder's vocabulary splits (a
proxy for misspellings that needs no dictionary).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from edurank.essays.windows import Windows, pool_windows


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of each row's unmasked token vectors."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)

WORD = re.compile(r"[A-Za-z']+")
SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")
BARE_CONTRACTIONS = frozenset("dont wont cant didnt doesnt isnt im ive youre theyre thats wouldnt shouldnt "
                              "couldnt wasnt arent havent hasnt whats lets".split())
STAT_NAMES = (
    "log_chars", "log_words", "log_sentences", "log_paragraphs", "mean_word_length", "mean_sentence_words",
    "std_sentence_words", "type_token_ratio", "long_word_rate", "split_word_rate", "lowercase_i_rate",
    "lowercase_sentence_start_rate", "comma_rate", "apostrophe_rate", "question_exclamation_rate",
    "missing_space_after_punctuation_rate", "space_before_punctuation_rate", "double_space_rate",
    "bare_contraction_rate", "uppercase_char_rate", "digit_char_rate", "unique_word_count_log",
)


def text_statistics(texts: Sequence[str], vocabulary: set[str]) -> np.ndarray:
    """(essays, len(STAT_NAMES)) float32; `vocabulary` is the set of whole words the tokenizer knows."""
    return np.array([_statistics(text, vocabulary) for text in texts], dtype=np.float32)


def _statistics(text: str, vocabulary: set[str]) -> list[float]:
    words = WORD.findall(text)
    lowered = [w.lower().strip("'") for w in words]
    n_words = max(len(words), 1)
    sentences = [s for s in SENTENCE_END.split(text) if s.strip()]
    sentence_words = np.array([len(WORD.findall(s)) for s in sentences] or [0], dtype=np.float64)
    paragraphs = [p for p in re.split(r"\n\s*\n|\n", text) if p.strip()]
    starts = [s.strip()[0] for s in sentences if s.strip()]
    n_chars = max(len(text), 1)
    return [
        np.log1p(len(text)), np.log1p(len(words)), np.log1p(len(sentences)), np.log1p(len(paragraphs)),
        float(np.mean([len(w) for w in words])) if words else 0.0,
        float(sentence_words.mean()), float(sentence_words.std()),
        len(set(lowered[:200])) / max(min(len(lowered), 200), 1),
        sum(len(w) >= 7 for w in words) / n_words,
        sum(w not in vocabulary for w in lowered if w) / n_words,
        len(re.findall(r"(?:^|\s)i(?=[\s',.!?])", text)) / n_words,
        sum(c.islower() for c in starts) / max(len(starts), 1),
        text.count(",") / n_words, text.count("'") / n_words,
        (text.count("?") + text.count("!")) / n_words,
        len(re.findall(r"[,.!?;:][A-Za-z]", text)) / n_words,
        len(re.findall(r"\s[,.!?;:]", text)) / n_words,
        len(re.findall(r"[^\S\n]{2,}", text)) / n_words,
        sum(w in BARE_CONTRACTIONS for w in lowered) / n_words,
        sum(c.isupper() for c in text) / n_chars, sum(c.isdigit() for c in text) / n_chars,
        np.log1p(len(set(lowered))),
    ]


def whole_words(tokenizer: PreTrainedTokenizerBase) -> set[str]:
    """The tokenizer's vocabulary entries that are whole lowercase words (no '##' pieces, no specials)."""
    return {token for token in tokenizer.get_vocab() if token.isalpha() and token.islower()}


def layer_means(model: PreTrainedModel, features: dict[str, torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """(windows, len(layers) x hidden): per window, the mean of its tokens in each of `layers` (indices into
    `hidden_states`: 0 = embeddings output, -1 = last layer)."""
    hidden = model(**features, output_hidden_states=True).hidden_states
    return torch.cat([masked_mean(hidden[layer], features["attention_mask"]) for layer in layers], dim=1)


@torch.inference_mode()
def layer_embeddings(window_features: Callable[[dict[str, torch.Tensor]], torch.Tensor], windows: Windows,
                     pad_id: int, essays_per_batch: int = 16) -> np.ndarray:
    """(essays, features) float32: `window_features` of every window (on CPU), each essay's windows pooled."""
    essay = torch.tensor(windows.essay)
    parts = []
    for rows in windows.essay_batches(essays_per_batch):
        features = windows.batch(rows, pad_id)
        local = torch.unique_consecutive(essay[rows], return_inverse=True)[1]
        parts.append(pool_windows(window_features(features).float(), features["attention_mask"], local,
                                  int(local.max()) + 1))
    return torch.cat(parts).numpy()
