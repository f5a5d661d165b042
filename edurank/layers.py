"""Cutting a BERT-like encoder at a layer: a frozen *trunk* (embeddings and the lower layers) whose output can
be cached, and the layers above it, which train. The classifier and the cross-encoder both train this way on a
CPU: the trunk runs once per text, each step only the layers above."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask

from edurank.errors import InputError


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A 0/1 mask, (batch, keys) or per query (batch, queries, keys) -> the (batch, 1, 1 or queries, keys)
    additive mask BERT layers add to their attention scores."""
    mask = attention_mask[:, None, None, :] if attention_mask.dim() == 2 else attention_mask[:, None, :, :]
    return (1.0 - mask.to(dtype)) * torch.finfo(dtype).min


def layer_mask(attention_mask: torch.Tensor, hidden: torch.Tensor, config: PretrainedConfig) -> torch.Tensor | None:
    """The mask BERT layers take: for a (batch, keys) mask, the one the full encoder builds itself for its
    attention implementation (transformers' `create_bidirectional_mask`; None when nothing is masked), which
    is also what ONNX Runtime's optimiser recognises and fuses into its Attention op; for a per-query
    (batch, queries, keys) mask, the additive one."""
    if attention_mask.dim() == 3:
        return additive_mask(attention_mask, hidden.dtype)
    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask)


def module_config(module: nn.Module) -> PretrainedConfig:
    """The transformer config a module's layers carry (layers copied out of an encoder keep one each)."""
    for part in module.modules():
        if isinstance(config := getattr(part, "config", None), PretrainedConfig):
            return config
    raise TypeError(f"{type(module).__name__} holds no transformer layers")


def within_segments(attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
    """(batch, queries, keys) 0/1 mask letting each token of a text pair attend only to its own text: layers
    run under it see each text alone, as a bi-encoder does."""
    same = token_type_ids[:, :, None] == token_type_ids[:, None, :]
    return same.to(attention_mask.dtype) * attention_mask[:, None, :]


def encoder_layers(encoder: PreTrainedModel) -> nn.ModuleList:
    base = encoder.base_model
    if not hasattr(base, "embeddings") or not hasattr(getattr(base, "encoder", None), "layer"):
        raise InputError(f"model type '{encoder.config.model_type}': a frozen trunk needs a BERT-like encoder "
                         "(embeddings + encoder.layer)")
    return base.encoder.layer


def keep_lower_layers(encoder: PreTrainedModel, layers: int) -> None:
    """Cut the encoder to its embeddings and lower `layers` layers (config included, so it saves and reloads
    as the smaller model): a smaller, faster model to fine-tune from a deeper one, as DistilBERT-style
    layer dropping does."""
    stack = encoder_layers(encoder)
    if not 0 < layers <= len(stack):
        raise InputError(f"--layers {layers}: the start model has {len(stack)} layers")
    encoder.base_model.encoder.layer = stack[:layers]
    encoder.config.num_hidden_layers = layers


class Trunk(nn.Module):
    """The frozen lower part: embeddings and the first `split` layers of the base encoder."""

    def __init__(self, encoder: PreTrainedModel, split: int):
        super().__init__()
        layers = encoder_layers(encoder)
        if not 0 <= split < len(layers):
            raise InputError(f"--freeze-layers {split}: the encoder has {len(layers)} layers; keep at least one "
                             "trainable")
        self.embeddings, self.layers, self.split = encoder.base_model.embeddings, layers[:split], split
        self.config = encoder.config
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()  # not inference_mode: the ONNX exporter traces through the trunk
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`attention_mask`: (batch, tokens), or per query (batch, tokens, tokens)."""
        hidden = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = layer_mask(attention_mask, hidden, self.config)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden


def run_layers(layers: nn.ModuleList, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states through `layers` (the part above a trunk), padding masked out."""
    mask = layer_mask(attention_mask, hidden, module_config(layers))
    for layer in layers:
        hidden = layer(hidden, mask)
    return hidden
