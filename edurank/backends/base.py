"""What every served model shares, whatever runs it: the backend names, the `Backend` protocol each family's
runners satisfy, the one place a model directory's backend picks its runner (`load_runner`), and `warm_up`.

Each family keeps a torch runner and an ONNX runner behind a protocol of its own that extends `Backend` (the
retriever's `Embedder`, the cross-encoder's `PairRunner`, the essay scorer's `LayerMeans` and `WindowScorer`,
the classifier's `Members`); its model class holds one and never asks which. The code the runners share
(the ONNX runners' base, the warm-up batch) is in `runners.py`. This module is apart from it and from
`onnx.py` because it imports neither torch nor onnxruntime (the names come from the light `config.py`): a
protocol, and code that only picks or warms up runners, need neither.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from edurank.artifacts import Manifest, open_artifact
from edurank.backends.config import ONNX, ONNX_INT8, TORCH
from edurank.errors import InputError

BACKENDS = (TORCH, ONNX, ONNX_INT8)
R, D = TypeVar("R"), TypeVar("D")  # a runner; where its model is (a directory, or a torch model argument)
log = logging.getLogger(__name__)


@runtime_checkable
class Backend(Protocol):
    """A served model on one backend: which one, and a warm-up that pays its first call's one-off costs
    (allocations, lazy initialisation) before anything is served or timed."""

    backend: str

    def warmup(self) -> None:
        """Run once on a small batch; the output is thrown away and nothing the model holds changes."""
        ...


def backend_of(manifest: Manifest | None, requested: str | None = None) -> str:
    """`requested`, else the backend an artifact's manifest records (an export's param `backend`), else torch
    (a trained model, or a plain HF / sentence-transformers directory without a manifest)."""
    if requested:
        return requested
    return manifest.params.get("backend", TORCH) if manifest is not None else TORCH


def open_served(path: str | Path, kind: str, backend: str | None = None) -> tuple[Path, Manifest | None, str]:
    """Where a served model of `kind` is and which backend runs it: a published version (or its root), checked
    and of `kind`, on the backend its manifest records; or, with `backend` given, a directory an export is
    still writing (no manifest yet) on that backend."""
    if backend:
        return Path(path), None, backend
    directory, manifest = open_artifact(path, kind)
    return directory, manifest, backend_of(manifest)


def load_runner(directory: D, backend: str, torch: Callable[[D], R], onnx: Callable[[D, str], R]) -> R:
    """The runner of the model in `directory` on `backend`: `torch(directory)` loads the trained modules (a
    torch model may also be named as the loaders of `edurank.encoders` accept: None for the bundled MiniLM, an
    artifact root), `onnx(directory, backend)` an export's graph; both give the family's protocol. A name that
    is no backend is refused here, for every family, before anything is read."""
    if backend not in BACKENDS:
        raise InputError(f"model '{directory}': backend '{backend}' is none of {', '.join(BACKENDS)}")
    return torch(directory) if backend == TORCH else onnx(directory, backend)


def warm_up(*models: Backend | None) -> float:
    """Warm up each model given (None: not loaded, skipped); the seconds it took."""
    started = time.perf_counter()
    for model in models:
        if model is not None:
            model.warmup()
    seconds = time.perf_counter() - started
    log.info("warmed up %s in %.2f s", ", ".join(type(m).__name__ for m in models if m is not None), seconds)
    return seconds
