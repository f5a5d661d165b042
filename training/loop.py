"""The training engine every trainer plugs into: a trainer brings its model, batches, loss and metric; the
loop owns the device, mixed precision, the optimiser step (accumulation, clipping, an adversarial second
pass), the evaluation schedule, progress bars and checkpoints that a rerun resumes from, and the fold runner
that keeps finished folds.

A checkpoint is written at every evaluation and holds the model, optimiser, scheduler, grad scaler, the
Python / NumPy / torch random states and the loop's own state (epoch, batch, history, the trainer's extras),
so a resumed run replays what an uninterrupted one would have done.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from edurank.artifacts import atomic_path, atomic_save_array, atomic_write_text
from edurank.errors import InputError
from edurank.training.config import DEVICES

log = logging.getLogger(__name__)
Batch = TypeVar("Batch")
CHECKPOINT = "checkpoint.pt"
PREDICTIONS, HISTORY = "predictions.npy", "history.json"


def resolve_device(choice: str) -> torch.device:
    """`auto` -> CUDA when torch sees a GPU, else the CPU; `cuda` without a GPU is the user's error."""
    if choice not in DEVICES:
        raise InputError(f"--device {choice}: choose one of {', '.join(DEVICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: torch sees no CUDA device on this machine (use --device cpu or auto)")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16; None (fp32) on the CPU or when switched off."""
    if not mixed_precision or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- what a model trains ------------------------------------------------------------------------------------

def freeze_lower_layers(model: PreTrainedModel, layers: int) -> None:
    """Freeze the embeddings and the first `layers` transformer layers of a BERT-like model: faster steps on
    a CPU, and less drift from the pretrained weights on small data."""
    if layers <= 0:
        return
    base = model.base_model
    for module in (base.embeddings, *base.encoder.layer[:layers]):
        module.requires_grad_(False)


def encoder_stack(encoder: PreTrainedModel) -> list[nn.Module]:
    """A BERT-like encoder's embeddings and layers, bottom to top (the order layer-wise decay walks)."""
    base = encoder.base_model
    return [base.embeddings, *base.encoder.layer]


def layerwise_groups(model: nn.Module, stack: Sequence[nn.Module], learning_rate: float, decay: float,
                     head_learning_rate: float, weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups with layer-wise learning-rate decay: the top module of `stack` (bottom to top) trains
    at `learning_rate`, each one below at `decay` times the one above; parameters outside the stack (pooling,
    head) train at `head_learning_rate`. Biases and LayerNorm weights get no weight decay."""
    rate_of: dict[int, float] = {}
    for depth, module in enumerate(reversed(stack)):
        rate_of.update({id(p): learning_rate * decay ** depth for p in module.parameters()})
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        rate = rate_of.get(id(parameter), head_learning_rate)
        decays = parameter.ndim > 1 and "LayerNorm" not in name
        groups.setdefault((rate, decays), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": weight_decay if decays else 0.0}
            for (rate, decays), params in groups.items()]


def adamw_with_warmup(parameters: Iterable[nn.Parameter] | list[dict[str, Any]], learning_rate: float,
                      weight_decay: float, warmup_ratio: float, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters (or parameter groups with their own `lr`) and a linear schedule
    with warmup over `steps` optimiser steps."""
    groups = list(parameters)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate, weight_decay=weight_decay)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * steps), steps)


def optimizer_steps(batches_per_epoch: int, epochs: int, accumulation: int = 1) -> int:
    """Optimiser steps a schedule spans: one per `accumulation` batches, the last partial group included."""
    return math.ceil(batches_per_epoch / accumulation) * epochs


class Adversary(Protocol):
    """FGM or AWP: `attack()` after the clean backward, a second backward at the moved point, `restore()`."""

    def attack(self) -> None: ...

    def restore(self) -> None: ...


# -- checkpoints ---------------------------------------------------------------------------------------------

def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save via a temp file and rename: a kill mid-write never leaves a broken checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """A checkpoint's payload, tensors on the CPU (a run may resume on another device than it started on)."""
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None


def random_states() -> dict[str, Any]:
    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


# -- the loop ------------------------------------------------------------------------------------------------

@dataclass
class LoopState:
    """Where a run is: the next epoch and batch, this epoch's batch losses so far, one history record per
    evaluation, the trainer's extras."""

    epoch: int = 0
    batch: int = 0
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Loop(Generic[Batch]):
    """Trains one model. `fit` runs epochs of batches from `batches(epoch)` through `loss(batch)`; a trainer's
    `evaluate()` returns the figures recorded at each of the `evals_per_epoch` evaluations, and `stop(state)`
    may end training early. Checkpoints go to `work_dir / CHECKPOINT` (none when `work_dir` is None)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device
    work_dir: Path | None
    label: str
    mixed_precision: bool = True
    accumulation: int = 1
    clip_norm: float = 1.0
    adversary: Adversary | None = None
    adversary_from_epoch: int = 0
    state: LoopState = field(default_factory=LoopState)

    def __post_init__(self) -> None:
        self.amp_dtype = autocast_dtype(self.device, self.mixed_precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision on a GPU; a no-op on the CPU."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def checkpoint_path(self) -> Path | None:
        return self.work_dir / CHECKPOINT if self.work_dir is not None else None

    def save(self) -> None:
        if self.checkpoint_path is None:
            return
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.checkpoint_path, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "random": random_states(), "state": self.state})

    def restore(self) -> bool:
        """Load the last checkpoint when there is one; True when the run resumes from it."""
        payload = load_checkpoint(self.checkpoint_path) if self.checkpoint_path is not None else None
        if payload is None:
            return False
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload["scaler"] and self.scaler.is_enabled():  # fp16 before and now: keep the loss scale
            self.scaler.load_state_dict(payload["scaler"])
        restore_random_states(payload["random"])
        self.state = payload["state"]
        log.info("%s: resuming at epoch %d, batch %d", self.label, self.state.epoch + 1, self.state.batch)
        return True

    def backward(self, loss: Callable[[Batch], torch.Tensor], batch: Batch, attack: bool) -> float:
        """The batch's loss backpropagated (scaled for accumulation), plus the adversary's pass when it attacks."""
        with self.autocast():
            value = loss(batch)
        self.scaler.scale(value.float() / self.accumulation).backward()
        if attack and self.adversary is not None:
            self.adversary.attack()
            with self.autocast():
                adversarial = loss(batch)
            self.scaler.scale(adversarial.float() / self.accumulation).backward()
            self.adversary.restore()
        return float(value.detach())

    def optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def fit(self, epochs: int, batches: Callable[[int], Sequence[Batch]], loss: Callable[[Batch], torch.Tensor],
            evaluate: Callable[[], dict[str, Any]] | None = None, evals_per_epoch: int = 1,
            stop: Callable[[LoopState], bool] | None = None) -> LoopState:
        """Train from the last checkpoint (or the start) to `epochs` or until `stop` says so. `batches(epoch)`
        must depend only on the epoch, so a resumed epoch replays the same batches. (With accumulation, an
        evaluation inside an accumulation group checkpoints without that group's gradients so far.)"""
        self.model.to(self.device)  # before restoring: the optimiser's state follows its parameters' device
        self.restore()
        self.model.train()
        while self.state.epoch < epochs and not (stop and self.state.history and stop(self.state)):
            epoch, epoch_batches = self.state.epoch, batches(self.state.epoch)
            if not epoch_batches:
                raise InputError(f"{self.label}: epoch {epoch + 1} has no batches (too little training data "
                                 "for the batch size)")
            eval_at = {round(len(epoch_batches) * (i + 1) / evals_per_epoch) - 1 for i in range(evals_per_epoch)}
            if self.state.batch == 0:
                self.state.losses = []
            losses = self.state.losses
            bar = tqdm(range(self.state.batch, len(epoch_batches)), unit="batch",
                       desc=f"{self.label} epoch {epoch + 1}/{epochs}")
            for index in bar:
                losses.append(self.backward(loss, epoch_batches[index], epoch >= self.adversary_from_epoch))
                if (index + 1) % self.accumulation == 0 or index + 1 == len(epoch_batches):
                    self.optimizer_step()
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                if index in eval_at:
                    self.record(epoch, index, len(epoch_batches), float(np.mean(losses)), evaluate)
                    if stop and stop(self.state):
                        log.info("%s: stopping early at epoch %.2f", self.label, self.state.history[-1]["epoch"])
                        break
        self.model.eval()
        return self.state

    def record(self, epoch: int, index: int, batches: int, loss: float,
               evaluate: Callable[[], dict[str, Any]] | None) -> None:
        """Evaluate, append the history record, move the position past this batch and checkpoint."""
        self.state.epoch, self.state.batch = (epoch + 1, 0) if index + 1 == batches else (epoch, index + 1)
        entry: dict[str, Any] = {"epoch": round(epoch + (index + 1) / batches, 2), "loss": round(loss, 4)}
        if evaluate is not None:
            self.model.eval()
            with torch.inference_mode():
                entry.update(evaluate())
            self.model.train()
        self.state.history.append(entry)
        log.info("%s: %s", self.label, "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in entry.items() if not isinstance(v, dict | list)))
        self.save()


# -- folds ---------------------------------------------------------------------------------------------------

@dataclass
class FoldResult:
    """A finished fold: its held-out predictions, its history and the seconds it took (0 when kept)."""

    directory: Path
    predictions: np.ndarray
    history: list[dict[str, Any]]
    seconds: float


def run_fold(directory: Path, label: str,
             train: Callable[[Path], tuple[np.ndarray, list[dict[str, Any]]]]) -> FoldResult:
    """Train one fold's model in `directory` (its checkpoint lives there), unless an earlier run finished it:
    a finished fold keeps its held-out predictions and history, so a rerun skips it."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / PREDICTIONS).is_file():
        log.info("%s: finished in an earlier run", label)
        return FoldResult(directory, np.load(directory / PREDICTIONS),
                          json.loads((directory / HISTORY).read_text()), 0.0)
    started = time.perf_counter()
    predictions, history = train(directory)
    atomic_write_text(directory / HISTORY, json.dumps(history))
    atomic_save_array(directory / PREDICTIONS, predictions)  # last: the mark of a finished fold
    (directory / CHECKPOINT).unlink(missing_ok=True)
    return FoldResult(directory, predictions, history, round(time.perf_counter() - started, 1))
