"""Adversarial training. FGM perturbs the word embeddings: the model must score an essay the same
when its input vectors move a little in the worst direction; AWP perturbs the weights themselves.
Both regularise fine-tuning on small or noisy data."""

from __future__ import annotations

import torch
from torch import nn


class FGM:
    """Fast Gradient Method (Miyato et al. 2017). Per step: clean backward, `attack()` moves the embedding
    matrix by epsilon x grad / ||grad||, backward the adversarial loss (gradients add up), `restore()`."""

    def __init__(self, model: nn.Module, epsilon: float = 1.0, target: str = "word_embeddings"):
        self.epsilon = epsilon
        self.parameters = [(name, p) for name, p in model.named_parameters() if target in name and p.requires_grad]
        if not self.parameters:
            raise ValueError(f"FGM: no trainable parameter named '*{target}*' (are the embeddings frozen?)")
        self.backup: dict[str, torch.Tensor] = {}

    def attack(self) -> None:
        for name, parameter in self.parameters:
            if parameter.grad is None:
                continue
            norm = torch.linalg.vector_norm(parameter.grad)
            if torch.isfinite(norm) and norm > 0:
                self.backup[name] = parameter.data.clone()
                parameter.data.add_(self.epsilon * parameter.grad / norm)

    def restore(self) -> None:
        for name, parameter in self.parameters:
            if name in self.backup:
                parameter.data = self.backup[name]
        self.backup = {}


class AWP:
    """Adversarial Weight Perturbation (Wu et al. 2020), as used in fine-tuning classifiers on noisy labels:
    after the clean backward, `attack()` moves each weight matrix along its gradient by `lr` x its own norm
    (clamped to `eps` x |w| per element), the adversarial loss is backpropagated at the moved weights, then
    `restore()` puts the weights back before the optimiser steps. It flattens the loss surface the weights
    sit in, which helps most where labels disagree."""

    def __init__(self, model: nn.Module, lr: float = 1.0, eps: float = 1e-3, target: str = "weight"):
        self.lr, self.eps = lr, eps
        self.parameters = [(name, p) for name, p in model.named_parameters()
                           if p.requires_grad and target in name and p.ndim > 1]
        if not self.parameters:
            raise ValueError(f"AWP: no trainable parameter named '*{target}*'")
        self.backup: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def attack(self) -> None:
        for name, parameter in self.parameters:
            if parameter.grad is None:
                continue
            grad_norm, weight_norm = torch.linalg.vector_norm(parameter.grad), torch.linalg.vector_norm(parameter)
            if not (torch.isfinite(grad_norm) and grad_norm > 0):
                continue
            self.backup[name] = parameter.data.clone()
            bound = self.eps * parameter.data.abs()
            parameter.data.add_(self.lr * parameter.grad / grad_norm * weight_norm)
            parameter.data.copy_(torch.clamp(parameter.data, self.backup[name] - bound, self.backup[name] + bound))

    def restore(self) -> None:
        for name, parameter in self.parameters:
            if name in self.backup:
                parameter.data = self.backup[name]
        self.backup = {}
