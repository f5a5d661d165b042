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


def adamw_with_warmup(parameters: Iterable[torch.nn.Parameter] | list[dict[str, Any]], learning_rate: float,
                      weight_decay: float, warmup_ratio: float, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters (or parameter groups with their own `lr`) and a linear schedule
    with warmup over `steps`."""
    groups = list(parameters)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate, weight_decay=weight_decay)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * steps), steps)


def layerwise_groups(model: torch.nn.Module, encoder: PreTrainedModel, learning_rate: float, decay: float,
                     head_learning_rate: float, weight_decay: float) -> list[dict[str, Any]]:
    """Layer-wise learning-rate decay: the top encoder layer trains at `learning_rate`, each layer below at
    `decay` times the one above, the embeddings last; parameters outside `encoder` (pooling, head) train at
    `head_learning_rate`. Biases and LayerNorm weights get no weight decay."""
    layers = list(encoder.base_model.encoder.layer)
    rate_of: dict[int, float] = {id(p): learning_rate * decay ** len(layers)
                                 for p in encoder.base_model.embeddings.parameters()}
    for depth, layer in enumerate(reversed(layers)):
        rate_of.update({id(p): learning_rate * decay ** depth for p in layer.parameters()})
    encoder_ids = {id(p) for p in encoder.parameters()}
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        rate = rate_of.get(id(parameter), head_learning_rate if id(parameter) not in encoder_ids else learning_rate)
        decays = parameter.ndim > 1 and "LayerNorm" not in name
        groups.setdefault((rate, decays), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": weight_decay if decays else 0.0}
            for (rate, decays), params in groups.items()]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save via a temp file and rename: a kill mid-write never leaves a broken checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    return torch.load(path, weights_only=False) if path.is_file() else None
