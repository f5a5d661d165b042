"""The fine-tuned essay scorer: a transformer encoder over an essay's windows, a pooling layer, and a
six-output regression head (one output per trait).

Pooling options (chosen at training, stored with the model):
- `mean`: masked mean of the last layer's tokens;
- `attention`: a learnt score per token, softmax-weighted sum of the last layer's tokens;
- `weighted-layer`: a learnt softmax mix of the last four layers, then the masked mean.
Each window is pooled, then an essay's windows are averaged weighted by their token counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from edurank.backends.base import load_runner
from edurank.backends.onnx import ONNX_FILE, TORCH, export_graph
from edurank.encoders import load_hf_encoder, load_hf_model, load_tokenizer, model_path
from edurank.errors import InputError
from edurank.essays.backends import OnnxWindowScorer, TorchWindowScorer, WindowScorer
from edurank.essays.config import POOLINGS, WindowSpec
from edurank.essays.data import TRAITS
from edurank.essays.features import masked_mean
from edurank.essays.windows import Windows, make_windows, pool_windows

CONFIG = "essay_model.json"
HEAD = "essay_head.safetensors"


class MeanPooling(nn.Module):
    def forward(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(hidden_states[-1], mask)


class AttentionPooling(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden_states[-1]
        logits = self.score(hidden).squeeze(-1)  # under autocast its dtype may differ from `hidden`'s
        logits = logits.masked_fill(mask == 0, torch.finfo(logits.dtype).min)
        return (torch.softmax(logits, dim=-1).unsqueeze(-1) * hidden).sum(1)


class WeightedLayerPooling(nn.Module):
    def __init__(self, last: int = 4):
        super().__init__()
        self.last = last
        self.weights = nn.Parameter(torch.zeros(last))

    def forward(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(tuple(hidden_states[-self.last:]))
        mixed = (torch.softmax(self.weights, 0).view(-1, 1, 1, 1) * stacked).sum(0)
        return masked_mean(mixed, mask)


def make_pooling(kind: str, hidden: int) -> nn.Module:
    if kind == "mean":
        return MeanPooling()
    if kind == "attention":
        return AttentionPooling(hidden)
    if kind == "weighted-layer":
        return WeightedLayerPooling()
    raise InputError(f"pooling '{kind}': choose one of {', '.join(POOLINGS)}")


class EssayRegressor(nn.Module):
    """encoder -> pooling per window -> windows averaged per essay -> dropout -> linear head (6 traits)."""

    def __init__(self, encoder: PreTrainedModel, pooling: str, dropout: float = 0.1):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder, self.pooling_kind = encoder, pooling
        self.pooling = make_pooling(pooling, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, len(TRAITS))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, essay: torch.Tensor,
                essays: int) -> torch.Tensor:
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              output_hidden_states=self.pooling_kind == "weighted-layer")
        states = output.hidden_states if output.hidden_states is not None else (output.last_hidden_state,)
        vectors = self.pooling(states, attention_mask)
        return self.head(self.dropout(pool_windows(vectors, attention_mask, essay, essays)))

    def window_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(windows, 6) scores of each window alone. The head is linear, so in eval mode an essay's scores are
        its windows' scores pooled as `forward` pools their vectors: what an export computes."""
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              output_hidden_states=self.pooling_kind == "weighted-layer")
        states = output.hidden_states if output.hidden_states is not None else (output.last_hidden_state,)
        return self.head(self.dropout(self.pooling(states, attention_mask)))

    def head_state(self) -> dict[str, torch.Tensor]:
        """The weights outside the encoder (pooling and head), saved next to the HF encoder."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}


@dataclass
class EssayModel:
    """A fine-tuned essay regressor with its tokenizer and window layout; saves to / loads from one dir. An
    export holds the regressor as a graph of windows -> their scores (`EssayRegressor.window_scores`)."""

    runner: WindowScorer  # the torch regressor, or an export's graph of its window scores
    tokenizer: PreTrainedTokenizerBase
    windows: WindowSpec
    path: Path | None = None

    @classmethod
    def from_base(cls, base: str | Path | None, pooling: str, windows: WindowSpec, dropout: float = 0.1) \
            -> EssayModel:
        """A new regressor on a pretrained encoder (the bundled MiniLM, or any local HF / ST dir)."""
        encoder, tokenizer = load_hf_encoder(base)
        return cls(TorchWindowScorer(EssayRegressor(encoder, pooling, dropout)), tokenizer, windows, model_path(base))

    @classmethod
    def load(cls, path: Path, backend: str = TORCH) -> EssayModel:
        config_file = Path(path) / CONFIG
        if not config_file.is_file():
            raise InputError(f"{path}: no {CONFIG}; not a fine-tuned essay model")
        config = json.loads(config_file.read_text())
        windows, directory = WindowSpec(**config["windows"]), Path(path)
        tokenizer = load_tokenizer(directory)  # both backends': an export keeps its source's
        runner: WindowScorer = load_runner(directory, backend, lambda fold: load_regressor(fold, config),
                                           OnnxWindowScorer.open)
        return cls(runner, tokenizer, windows, directory)

    @property
    def torch_runner(self) -> TorchWindowScorer:
        if not isinstance(self.runner, TorchWindowScorer):
            raise InputError(f"essay model '{self.path}': an ONNX export cannot be trained, re-saved or exported "
                             "again; give its source")
        return self.runner

    @property
    def torch_regressor(self) -> EssayRegressor:
        """The torch regressor, for training, saving and exporting; an export has none."""
        return self.torch_runner.regressor

    @property
    def regressor(self) -> EssayRegressor:
        return self.torch_regressor

    def save(self, path: Path, backend: str = TORCH) -> None:
        """The HF encoder with the pooling and head weights, or for an ONNX `backend` the window-scores graph."""
        regressor = self.torch_regressor
        path.mkdir(parents=True, exist_ok=True)
        if backend == TORCH:
            regressor.encoder.save_pretrained(path)
            save_file({k: v.contiguous() for k, v in regressor.head_state().items()}, path / HEAD)
        else:
            sample = {k: v for k, v in self.tokenizer(["an example", "a longer example text"], padding=True,
                                                      return_tensors="pt").items()
                      if k in ("input_ids", "attention_mask")}
            export_graph(regressor, sample, path / ONNX_FILE, backend,
                         call=lambda model, **inputs: model.window_scores(**inputs), output_axes={0: "windows"})
        self.tokenizer.save_pretrained(path)
        config: dict[str, Any] = {"pooling": regressor.pooling_kind, "windows": self.windows.to_dict(),
                                  "dropout": regressor.dropout.p, "traits": list(TRAITS)}
        (path / CONFIG).write_text(json.dumps(config, indent=2))

    def make_windows(self, texts: Sequence[str]) -> Windows:
        return make_windows(self.tokenizer, texts, self.windows)

    def batch(self, windows: Windows, rows: Sequence[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        """The windows `rows` (whole essays, in order) padded, each one's essay numbered from 0, the essays."""
        features = windows.batch(rows, self.tokenizer.pad_token_id)
        essay = torch.tensor([windows.essay[row] for row in rows])
        essay = torch.unique_consecutive(essay, return_inverse=True)[1]
        return features, essay, int(essay.max()) + 1

    def forward(self, windows: Windows, rows: Sequence[int]) -> torch.Tensor:
        """Raw (unclipped) scores of the essays whose windows are `rows`, by the torch regressor as it is:
        training's forward pass (its mode, with gradients)."""
        return self.torch_runner.forward(*self.batch(windows, rows))

    @torch.inference_mode()
    def predict(self, texts: Sequence[str] | Windows, essays_per_batch: int = 16) -> np.ndarray:
        """(essays, 6) raw scores, in eval mode on either backend; callers clip."""
        windows = texts if isinstance(texts, Windows) else self.make_windows(texts)
        parts = [self.runner.scores(*self.batch(windows, rows)).float().cpu()
                 for rows in windows.essay_batches(essays_per_batch)]
        return torch.cat(parts).numpy()


def load_regressor(directory: Path, config: dict[str, Any]) -> TorchWindowScorer:
    """A saved fold's torch regressor (eval mode): the HF encoder, then the pooling and head weights beside it."""
    regressor = EssayRegressor(load_hf_model(directory), config["pooling"], config["dropout"])
    regressor.load_state_dict(load_file(directory / HEAD), strict=False)
    return TorchWindowScorer(regressor.eval())
