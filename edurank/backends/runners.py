"""What the runners of every family share (each satisfies `edurank.backends.base.Backend`): the batch they warm
up on, serving a torch module (eval mode, no gradients, its mode back after), and the base of the ONNX runners.

Apart from `base.py`, which loads neither torch nor onnxruntime, and from `onnx.py`, which writes the graphs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import torch

from edurank.backends.onnx import ONNX_FILE, OnnxSession


def warmup_features(names: Sequence[str], rows: int = 2, tokens: int = 16) -> dict[str, torch.Tensor]:
    """The batch a runner warms up on, for the inputs `names`: `rows` rows of `tokens` ids every vocabulary
    has (1..tokens), all attended, the second half of each row its second text (token_type_ids)."""
    ids = torch.arange(1, tokens + 1).repeat(rows, 1)
    second = (torch.arange(tokens) >= tokens // 2).long().repeat(rows, 1)
    values = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": second}
    return {name: values[name] for name in names}


@contextlib.contextmanager
def serving(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`module` as a torch runner serves it: in eval mode (no dropout) and inference mode (no gradients) for
    the block, then back in the mode it was in (a model under training is served between its steps)."""
    training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            yield module
    finally:
        module.train(training)


@dataclass
class OnnxRunner:
    """What each family's ONNX runner builds on: an export's graph in a session, and the backend it was
    exported for (onnx or onnx-int8). A subclass adds its own fields after these and its forward method;
    warming up runs the graph on `warmup_features` of its inputs."""

    session: OnnxSession
    backend: str

    @classmethod
    def open(cls, directory: Path, backend: str, **fields: Any) -> Self:
        """The export in `directory` (its model.onnx) on `backend`; `fields`: the subclass's own."""
        return cls(OnnxSession.open(directory / ONNX_FILE), backend, **fields)

    def warmup(self) -> None:
        self.session(warmup_features(self.session.inputs))
