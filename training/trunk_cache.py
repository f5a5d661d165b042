"""The frozen trunk's output for every training text, computed once and cached on disk: a trainer whose lower
layers are frozen then runs only the layers above at each step, and later runs skip the trunk altogether.
Rows are stacked token after token (float16, memory-mapped): row i is `hidden[offsets[i]:offsets[i + 1]]`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


@dataclass
class TrunkCache:
    """The trunk's hidden states for every text, and where each row's tokens start."""

    hidden: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, trunk: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], width: int, tokenizer: Any,
              prompts: Sequence[str], max_length: int, path: Path, device: str | torch.device = "cpu") -> TrunkCache:
        """Read the cache at `path`, or run `trunk(input_ids, attention_mask)` (hidden size `width`) over the
        prompts in length-sorted batches, on `device`, and write it there atomically."""
        if path.is_file() and path.with_suffix(".offsets.npy").is_file():
            log.info("trunk cache: reusing %s", path)
            return cls(np.load(path, mmap_mode="r"), np.load(path.with_suffix(".offsets.npy")))
        lengths = np.array([len(ids) for ids in tokenizer(list(prompts), truncation=True,
                                                            max_length=max_length)["input_ids"]])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npy")
        hidden = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                           shape=(int(offsets[-1]), width))
        order = np.argsort(lengths)
        for start in tqdm(range(0, len(order), 64), desc="trunk cache", unit="batch"):
            rows = order[start:start + 64]
            features = tokenizer([prompts[r] for r in rows], truncation=True, max_length=max_length, padding=True,
                                 return_tensors="pt")
            with torch.inference_mode():
                states = trunk(features["input_ids"].to(device), features["attention_mask"].to(device))
            states = states.float().cpu().numpy()
            for row, state in zip(rows, states, strict=True):
                hidden[offsets[row]:offsets[row + 1]] = state[:lengths[row]]
        hidden.flush()
        del hidden
        np.save(path.with_suffix(".offsets.npy"), offsets)
        tmp.replace(path)
        return cls(np.load(path, mmap_mode="r"), offsets)

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
