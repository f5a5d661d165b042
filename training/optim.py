"""Pieces every trainer shares: seeding, freezing lower layers, the AdamW + linear-warmup optimiser and
atomic checkpoints that a rerun resumes from."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, get_linear_schedule_with_warmup


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def freeze_lower_layers(model: PreTrainedModel, layers: int) -> None:
    """Freeze the embeddings and the first `layers` transformer layers of a BERT-like model: faster steps on
    a CPU, and less drift from the pretrained weights on small data."""
    if layers <= 0:
        return
    base = model.base_model
    for parameter in base.embeddings.parameters():
        parameter.requires_grad = False
    for layer in base.encoder.layer[:layers]:
        for parameter in layer.parameters():
            parameter.requires_grad = False


def adamw_with_warmup(parameters: Iterable[torch.nn.Parameter], learning_rate: float, weight_decay: float,
                      warmup_ratio: float, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters and a linear schedule with warmup over `steps`."""
    optimizer = torch.optim.AdamW([p for p in parameters if p.requires_grad], lr=learning_rate,
                                  weight_decay=weight_decay)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * steps), steps)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save via a temp file and rename: a kill mid-write never leaves a broken checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    return torch.load(path, weights_only=False) if path.is_file() else None
