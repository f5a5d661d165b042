"""The misconception classifier: a sequence classifier over every label, masked per question.

Why a sequence classifier and not a cross-encoder over (response, candidate label) pairs: on map/train.csv
a response has 6-11 candidate labels (250,091 pairs for 29,356 rows), so a cross-encoder costs 8.5x the
forward passes at training and at serving, and on this CPU one pass over the rows already takes minutes.
A question's impossible labels (never seen for it, or with the wrong True_/False_ prefix for the answer's
correctness) are masked out of the softmax instead, which gives the classifier the same focus.

The network is split at layer `k`: a frozen *trunk* (embeddings and the lower `k` encoder layers, identical
to the base model) and *members*, each holding its own copy of the upper layers, the pooling and the label
head. Every member of an ensemble (folds x seeds) shares one trunk, so the trunk runs once per batch; and a
trainer caches the trunk's output for the whole data set once, so each step runs only the upper layers.
Works with BERT-like encoders (BERT, MiniLM, RoBERTa, ELECTRA): those whose layers take (hidden, mask).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from edurank.backends.config import TORCH
from edurank.backends.runners import OnnxRunner, warmup_features
from edurank.encoders import load_hf_encoder, load_tokenizer
from edurank.errors import InputError
from edurank.layers import Trunk, encoder_layers, run_layers

MEMBER_CONFIG, MEMBER_WEIGHTS = "member.json", "member.safetensors"


@dataclass
class MemberConfig:
    labels: int
    split: int  # the trunk layer this member starts from
    dropout: float = 0.1  # before the head
    layer_dropout: float = 0.0  # inside the trained layers (attention and hidden); 0 trains 1.6x faster on a CPU
    seed: int = 42
    fold: int | None = None  # the fold it did not see (None: trained on every row)


class Member(nn.Module):
    """Upper encoder layers + masked mean pooling + dropout + a linear head over every label. The layers'
    own dropout is `layer_dropout` (off by default: with few trained layers it costs more time than it
    regularises)."""

    def __init__(self, encoder: PreTrainedModel, config: MemberConfig):
        super().__init__()
        self.config = config
        self.layers = copy.deepcopy(encoder_layers(encoder)[config.split:])
        for module in self.layers.modules():
            if isinstance(module, nn.Dropout):
                module.p = config.layer_dropout
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(encoder.config.hidden_size, config.labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = run_layers(self.layers, hidden, attention_mask)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, path / MEMBER_WEIGHTS)
        (path / MEMBER_CONFIG).write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, path: Path, encoder: PreTrainedModel) -> Member:
        config_file = path / MEMBER_CONFIG
        if not config_file.is_file():
            raise InputError(f"{path}: no {MEMBER_CONFIG}; not a classifier member")
        member = cls(encoder, MemberConfig(**json.loads(config_file.read_text())))
        member.load_state_dict(load_file(path / MEMBER_WEIGHTS))
        return member.eval()


def masked_log_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the allowed labels only (a row with none allowed falls back to all labels)."""
    allowed = allowed | ~allowed.any(dim=1, keepdim=True)
    return torch.log_softmax(logits.float().masked_fill(~allowed, float("-inf")), dim=-1)


class Members:
    """What both backends of an ensemble share (each a `edurank.backends.base.Backend`): the tokenizer, the
    prompt budget, and averaging each member's masked softmax; `member_logits` is the backend's forward pass."""

    tokenizer: PreTrainedTokenizerBase
    max_length: int
    backend: str

    def member_logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(members, rows, labels) logits."""
        raise NotImplementedError

    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(prompts), truncation=True, max_length=self.max_length, padding=True,
                              return_tensors="pt")

    @torch.inference_mode()
    def probabilities(self, features: dict[str, torch.Tensor], allowed: np.ndarray) -> np.ndarray:
        """(rows, labels) mean over members of each member's masked softmax."""
        mask = torch.from_numpy(allowed)
        logits = self.member_logits(features)
        return torch.stack([masked_log_softmax(member, mask).exp() for member in logits]).mean(0).numpy()

    def warmup(self) -> None:
        self.member_logits(warmup_features(("input_ids", "attention_mask")))


@dataclass
class Ensemble(Members):
    """The base encoder, the trunk cut from it, its tokenizer and the members whose masked probabilities are
    averaged."""

    encoder: PreTrainedModel
    trunk: Trunk
    tokenizer: PreTrainedTokenizerBase
    members: list[Member]
    max_length: int
    backend: str = TORCH

    @classmethod
    def load(cls, base: Path, member_dirs: Sequence[Path], max_length: int) -> Ensemble:
        encoder, tokenizer = load_hf_encoder(base, "classifier trunk")
        members = [Member.load(path, encoder) for path in member_dirs]
        splits = {member.config.split for member in members}
        if len(splits) != 1:
            raise InputError(f"{base}: members start from different layers ({sorted(splits)})")
        return cls(encoder, Trunk(encoder, splits.pop()), tokenizer, members, max_length)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(members, rows, labels) logits: the trunk once, then every member on its output (what an export
        writes as one graph)."""
        hidden = self.trunk(input_ids, attention_mask)
        return torch.stack([member(hidden, attention_mask) for member in self.members])

    @torch.inference_mode()
    def member_logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward(features["input_ids"], features["attention_mask"])


@dataclass
class OnnxEnsemble(OnnxRunner, Members):
    """An export's ensemble: trunk and members in one ONNX Runtime graph."""

    tokenizer: PreTrainedTokenizerBase
    max_length: int

    @classmethod
    def load(cls, directory: Path, backend: str, max_length: int) -> OnnxEnsemble:
        return cls.open(directory, backend, tokenizer=load_tokenizer(directory, "classifier"), max_length=max_length)

    def member_logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(self.session(features))
