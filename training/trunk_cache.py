"""The frozen trunk's output for every training text, computed once and cached on disk: a trainer whose lower
layers are frozen then runs only the layers above at each step, and later runs skip the trunk altogether.
Rows are stacked token after token (float16, memory-mapped): row i is `hidden[offsets[i]:offsets[i + 1]]`.
A row may be a text pair (the cross-encoder's); then each token's segment (0: first text, 1: second) is kept
too, since the layers above and the pooling tell the texts apart by it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from edurank.artifacts import atomic_path, atomic_save_array

log = logging.getLogger(__name__)


@dataclass
class TrunkCache:
    """The trunk's hidden states for every text, and where each row's tokens start."""

    hidden: np.ndarray
    offsets: np.ndarray
    segment_ids: np.ndarray | None = None  # per token, for text pairs

    @classmethod
    def build(cls, trunk: Callable[..., torch.Tensor], width: int, tokenizer: Any,
              prompts: Sequence[str] | Sequence[tuple[str, str]], max_length: int, path: Path,
              device: str | torch.device = "cpu") -> TrunkCache:
        """Read the cache at `path`, or run `trunk(input_ids, attention_mask[, token_type_ids])` (hidden size
        `width`) over the prompts (texts or pairs) in length-sorted batches, on `device`, and write it there
        atomically."""
        pairs = bool(prompts) and isinstance(prompts[0], tuple)
        segments_path = path.with_suffix(".segments.npy")
        if path.is_file() and path.with_suffix(".offsets.npy").is_file() and (segments_path.is_file() or not pairs):
            log.info("trunk cache: reusing %s", path)
            return cls(np.load(path, mmap_mode="r"), np.load(path.with_suffix(".offsets.npy")),
                       np.load(segments_path) if pairs else None)

        def tokenize(rows: Sequence[int] | range, **kwargs: Any) -> Any:
            texts = [prompts[r] for r in rows]
            if pairs:
                return tokenizer([a for a, _ in texts], [b for _, b in texts], truncation="longest_first",
                                 max_length=max_length, **kwargs)
            return tokenizer(texts, truncation=True, max_length=max_length, **kwargs)

        lengths = np.array([len(ids) for ids in tokenize(range(len(prompts)))["input_ids"]])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        segments = np.zeros(int(offsets[-1]), dtype=np.int8) if pairs else None
        with atomic_path(path) as tmp:  # renamed into place last: a cache with its offsets (and segments)
            hidden = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                               shape=(int(offsets[-1]), width))
            order = np.argsort(lengths)
            for start in tqdm(range(0, len(order), 64), desc="trunk cache", unit="batch"):
                rows = order[start:start + 64]
                features = tokenize(rows, padding=True, return_tensors="pt")
                inputs = [features["input_ids"], features["attention_mask"]]
                if segments is not None:
                    inputs.append(features["token_type_ids"])
                    for row, types in zip(rows, features["token_type_ids"].numpy(), strict=True):
                        segments[offsets[row]:offsets[row + 1]] = types[:lengths[row]]
                with torch.inference_mode():
                    states = trunk(*(tensor.to(device) for tensor in inputs))
                states = states.float().cpu().numpy()
                for row, state in zip(rows, states, strict=True):
                    hidden[offsets[row]:offsets[row + 1]] = state[:lengths[row]]
            hidden.flush()
            del hidden
            if segments is not None:
                atomic_save_array(segments_path, segments)
            atomic_save_array(path.with_suffix(".offsets.npy"), offsets)
        return cls(np.load(path, mmap_mode="r"), offsets, segments)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states padded to the batch's longest row, attention mask) for `rows`."""
        lengths = [int(self.offsets[r + 1] - self.offsets[r]) for r in rows]
        hidden = np.zeros((len(rows), max(lengths), self.hidden.shape[1]), dtype=np.float32)
        mask = np.zeros((len(rows), max(lengths)), dtype=np.int64)
        for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            hidden[i, :length] = self.hidden[self.offsets[row]:self.offsets[row + 1]]
            mask[i, :length] = 1
        return torch.from_numpy(hidden), torch.from_numpy(mask)

    def segments(self, rows: Sequence[int]) -> torch.Tensor:
        """Each token's segment for `rows` (text pairs only), padded like `batch`."""
        if self.segment_ids is None:
            raise ValueError("this cache holds single texts, not pairs")
        lengths = [int(self.offsets[r + 1] - self.offsets[r]) for r in rows]
        types = np.zeros((len(rows), max(lengths)), dtype=np.int64)
        for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            types[i, :length] = self.segment_ids[self.offsets[row]:self.offsets[row + 1]]
        return torch.from_numpy(types)


def length_grouped_batches(rows: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches of rows of similar length (less padding): rows shuffled, sorted by length within
    chunks of 50 batches, cut into batches, batch order shuffled. Depends only on `seed`."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(rows)
    chunk = batch_size * 50
    ordered = np.concatenate([part[np.argsort(lengths[part], kind="stable")]
                              for part in np.split(shuffled, range(chunk, len(shuffled), chunk))])
    batches = [ordered[i:i + batch_size].tolist() for i in range(0, len(ordered), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
