"""Adversarial training by perturbing the word embeddings (FGM): the model must score an essay the same
when its input vectors move a little in the worst direction, which regularises fine-tuning on small data."""

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
