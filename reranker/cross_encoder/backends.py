"""What a cross-encoder runs, per backend: a batch of tokenised pairs -> one float32 logit per pair.

`TorchPairRunner` is the pair scorer itself (what training fine-tunes); `OnnxPairRunner` an export's graph of
the whole scorer, head included. `Reranker.load` picks one with `edurank.backends.base.load_runner`; the
reranker tokenises, batches and calibrates alike over either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from edurank.backends.base import Backend
from edurank.backends.config import TORCH
from edurank.backends.runners import OnnxRunner, serving, warmup_features

if TYPE_CHECKING:
    from edurank.reranker.cross_encoder.model import PairScorer

PAIR_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class PairRunner(Backend, Protocol):
    """One backend of a cross-encoder."""

    def logits(self, features: dict[str, torch.Tensor]) -> np.ndarray:
        """(pairs,) float32 logits of tokenised pairs (`PAIR_INPUTS`), on the CPU, without gradients."""
        ...


@dataclass
class TorchPairRunner:
    """The pair scorer itself, on any device: served in eval mode whatever mode it is in (training's)."""

    scorer: PairScorer
    backend: str = TORCH

    def logits(self, features: dict[str, torch.Tensor]) -> np.ndarray:
        device = next(self.scorer.parameters()).device
        with serving(self.scorer):
            return self.scorer(**{k: v.to(device) for k, v in features.items()}).float().cpu().numpy()

    def warmup(self) -> None:
        self.logits(warmup_features(PAIR_INPUTS))


@dataclass
class OnnxPairRunner(OnnxRunner):
    """An export's graph of the whole scorer (encoder, within-text layers, segment-cosine head)."""

    def logits(self, features: dict[str, torch.Tensor]) -> np.ndarray:
        return self.session(features).astype(np.float32)
