"""The cross-encoder reranker: (topic text, content text) pairs -> one logit -> a calibrated probability.

Both texts go through the encoder together, so tokens attend across the pair (a cross-encoder; with
`isolated_layers`, only above those layers). The
head is a scaled cosine between the mean-pooled tokens of each segment. Initialised from a bi-encoder such
as the bundled MiniLM, this head starts out as a sensible relevance score, whereas a [CLS] + linear head
starts random: on this CPU budget (a few hundred steps) a [CLS] head stayed at chance (held-out AUC 0.51),
while the cosine head starts where the bi-encoder is and learns from there.

Saved as a Hugging Face encoder directory plus `reranker.json` (pair format, head, calibration, rule). An
export (`edurank export`, manifest param `backend`) holds the whole scorer, head included, as one ONNX graph
in place of the weights, with the same tokenizer and `reranker.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from edurank.artifacts import MANIFEST, Manifest, atomic_write_text
from edurank.backends.base import backend_of, load_runner
from edurank.backends.config import TORCH
from edurank.encoders import fingerprint, load_hf_model, load_tokenizer, model_path
from edurank.errors import InputError
from edurank.layers import encoder_layers, layer_mask, within_segments
from edurank.reranker.calibration import Calibration
from edurank.reranker.cross_encoder.backends import OnnxPairRunner, PairRunner, TorchPairRunner
from edurank.reranker.decision import DecisionRule
from edurank.retriever.texts import TextBuilder

RERANKER_FILE = "reranker.json"
Parts = Sequence[str | None]


@dataclass(frozen=True)
class PairFormat:
    """How a pair is written: token budgets per side and whether the retrieval rank is given as text."""

    topic_tokens: int = 32
    content_tokens: int = 64
    rank_feature: bool = False

    @property
    def max_length(self) -> int:
        return self.topic_tokens + self.content_tokens + 1


class PairScorer(torch.nn.Module):
    """Encoder over `[CLS] topic [SEP] content [SEP]`; logit = scale * cos(mean(topic tokens),
    mean(content tokens)) + bias. Segments are told apart by the tokenizer's token_type_ids.

    `isolated_layers` k > 0 makes it a late-interaction cross-encoder (as in DeFormer): the lower k layers
    let each token attend only to its own text, so the topic's states there are what the bi-encoder it
    starts from computes (the content's nearly so: its positions and segment embedding follow the topic's),
    and only the layers above attend across the pair. Started from the fine-tuned retriever, it starts
    nearer the retriever's own reading than a cross-encoder attending across from the first layer."""

    def __init__(self, encoder: PreTrainedModel, scale: float = 20.0, bias: float = -10.0, isolated_layers: int = 0):
        super().__init__()
        self.encoder = encoder
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))
        self.isolated_layers = isolated_layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        if not self.isolated_layers:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            return self.head(hidden, attention_mask, token_type_ids)
        hidden = self.encoder.base_model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return self.from_layer(0, hidden, attention_mask, token_type_ids)

    def layer_mask(self, layer: int, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """The attention mask layer `layer` runs under: within each text below `isolated_layers`, else across."""
        return within_segments(attention_mask, token_type_ids) if layer < self.isolated_layers else attention_mask

    def from_layer(self, split: int, hidden: torch.Tensor, attention_mask: torch.Tensor,
                   token_type_ids: torch.Tensor) -> torch.Tensor:
        """Logits from the hidden states entering layer `split` (a frozen trunk's cached output, in training):
        only the layers from `split` up run."""
        for index, layer in enumerate(encoder_layers(self.encoder)[split:], start=split):
            hidden = layer(hidden, layer_mask(self.layer_mask(index, attention_mask, token_type_ids), hidden,
                                              self.encoder.config))
        return self.head(hidden, attention_mask, token_type_ids)

    def head(self, hidden: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        second = token_type_ids.unsqueeze(-1).to(hidden.dtype)
        topic = (hidden * mask * (1 - second)).sum(1) / (mask * (1 - second)).sum(1).clamp(min=1)
        content = (hidden * mask * second).sum(1) / (mask * second).sum(1).clamp(min=1)
        cosine = torch.nn.functional.cosine_similarity(topic, content, dim=-1)
        return self.scale * cosine + self.bias


@dataclass
class Reranker:
    """A pair scorer with its tokenizer, pair format, calibration and decision rule: the served second stage."""

    KIND = "reranker"
    runner: PairRunner  # the torch scorer, or an export's graph of it
    tokenizer: PreTrainedTokenizerBase
    path: Path
    fingerprint: str
    format: PairFormat = field(default_factory=PairFormat)
    calibration: Calibration = field(default_factory=Calibration)
    rule: DecisionRule = field(default_factory=DecisionRule)
    manifest: Manifest | None = None  # None for a fresh model

    @classmethod
    def load(cls, path: str | Path | None, pair_format: PairFormat | None = None,
             backend: str | None = None) -> Reranker:
        """A trained reranker version or export (or artifact root), or a fresh one from any local HF/ST dir
        (None: the bundled MiniLM). `backend` names an export whose manifest is not written yet."""
        resolved = model_path(path)
        manifest = Manifest.verified(resolved) if (resolved / MANIFEST).is_file() else None
        settings: dict[str, Any] = {}
        if (resolved / RERANKER_FILE).is_file():
            settings = json.loads((resolved / RERANKER_FILE).read_text())
        fmt = pair_format or PairFormat(**settings.get("format", {}))
        tokenizer = load_tokenizer(resolved, "reranker")  # both backends': an export keeps its source's
        runner: PairRunner = load_runner(
            resolved, backend_of(manifest, backend),
            lambda directory: TorchPairRunner(PairScorer(load_hf_model(directory, "reranker"),
                                                         **settings.get("head", {})).eval()),
            OnnxPairRunner.open)
        return cls(runner, tokenizer, resolved, fingerprint(resolved), fmt,
                   Calibration(**settings.get("calibration", {})), DecisionRule(**settings.get("rule", {})), manifest)

    @property
    def backend(self) -> str:
        return self.runner.backend

    def warmup(self) -> None:
        self.runner.warmup()

    @property
    def source_fingerprint(self) -> str:
        """The torch model's fingerprint: an export's source (whose logits it reproduces), else its own."""
        exported = self.backend != TORCH and self.manifest is not None and self.manifest.base_model is not None
        return self.manifest.base_model.fingerprint if exported else self.fingerprint

    @property
    def model(self) -> PairScorer:
        """The torch scorer, for training, saving and exporting; an export has none."""
        if not isinstance(self.runner, TorchPairRunner):
            raise InputError(f"reranker '{self.path}': an {self.backend} export cannot be trained or re-saved; "
                             "give the model it was exported from (its manifest's base_model)")
        return self.runner.scorer

    def save(self, directory: Path) -> None:
        """Encoder weights and tokenizer, plus reranker.json (format, head, calibration, rule)."""
        self.model.encoder.save_pretrained(str(directory))
        self.save_settings(directory)

    def save_settings(self, directory: Path) -> None:
        """What an export keeps beside its graph: the tokenizer and reranker.json."""
        self.tokenizer.save_pretrained(str(directory))
        model = self.model
        head = {"scale": float(model.scale.detach()), "bias": float(model.bias.detach()),
                "isolated_layers": model.isolated_layers}
        atomic_write_text(directory / RERANKER_FILE, json.dumps(
            {"format": asdict(self.format), "head": head, "calibration": asdict(self.calibration),
             "rule": self.rule.to_dict()}, indent=2))

    def pairs(self, topics: Sequence[Parts], contents: Sequence[Parts],
              ranks: Sequence[int] | None = None) -> list[tuple[str, str]]:
        """Pair texts: each topic's parts and each content's parts cut to their side's token budget;
        topics[i] goes with contents[i]."""
        tokenizer = self.tokenizer
        topic_texts = TextBuilder(tokenizer, self.format.topic_tokens + 1).build(topics)
        content_texts = TextBuilder(tokenizer, self.format.content_tokens + 1).build(contents)
        if self.format.rank_feature:
            if ranks is None:
                raise ValueError("this reranker was trained with the retrieval rank: pass ranks")
            content_texts = [f"rank {r} | {t}" for r, t in zip(ranks, content_texts, strict=True)]
        return list(zip(topic_texts, content_texts, strict=True))

    def scores(self, items: Sequence[tuple[Parts, Parts, int]], batch_size: int = 64) -> np.ndarray:
        """Logits of (topic parts, content parts, retrieval rank) items, in their order: what the service
        batches across requests (the worker thread is then the only user of this tokenizer)."""
        topics, contents, ranks = zip(*items, strict=True) if items else ((), (), ())
        return self.logits(self.pairs(topics, contents, ranks), batch_size)

    def tokenize(self, pairs: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True,
                                truncation="longest_first", max_length=self.format.max_length, return_tensors="pt")
        if "token_type_ids" not in tokens:
            raise InputError(f"reranker '{self.path}': its tokenizer gives no token_type_ids to tell the texts apart")
        return {k: tokens[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def logits_of(self, features: dict[str, torch.Tensor]) -> np.ndarray:
        """Logits for already tokenised pairs, in eval mode without gradients (training calls `model` itself)."""
        return self.runner.logits(features)

    def logits(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        """Logits in length-sorted batches (little padding), returned in the input order."""
        order = np.argsort([len(a) + len(b) for a, b in pairs], kind="stable")
        result = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            result[rows] = self.logits_of(self.tokenize([pairs[i] for i in rows]))
        return result

    def probabilities(self, items: Sequence[tuple[Parts, Parts, int]], batch_size: int = 64) -> np.ndarray:
        """Calibrated probabilities of the items `scores` takes."""
        return self.calibration(self.scores(items, batch_size), [rank for _, _, rank in items])
