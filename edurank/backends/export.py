"""`edurank export`, the part every model family shares: a trained (or any local) model as an ONNX Runtime
artifact of its own kind, checked against torch before it is published.

An export is an artifact of its source's kind (manifest param `backend`; base model = the source and its
fingerprint; the source's data and params carried over), so every command and the service load it wherever
that kind is accepted. Each family writes its graph(s) and checks agreement on a slice of `--data` in its own
`export.py` (a bi-encoder: embedding cosine; a cross-encoder: rank agreement; the essay scorer: MCRMSE delta;
the classifier: MAP@3 delta); the speed-up of the same slice goes in the manifest too. A check that fails
publishes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

import edurank
from edurank.artifacts import Manifest, fresh_dir, hash_json, model_ref, publish_artifact, staging_dir
from edurank.backends.base import backend_of
from edurank.backends.config import TORCH, ExportConfig
from edurank.encoders import portable_name
from edurank.errors import InputError

log = logging.getLogger(__name__)
EXPORTS = "exports"  # <artifacts>/exports: where the service looks for exports of the models it serves
T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """The model being exported, as the shared flow needs it."""

    kind: str
    path: Path
    fingerprint: str
    manifest: Manifest | None

    @classmethod
    def published(cls, model: Any) -> Source:
        """A served model loaded from a published artifact: its class's KIND, version directory and manifest."""
        if model.path is None or model.manifest is None:
            raise InputError(f"--model: not a published '{model.KIND}' artifact (no manifest)")
        return cls(model.KIND, model.path, model.manifest.weights, model.manifest)

    def refuse_export(self) -> None:
        backend = backend_of(self.manifest)
        if backend != TORCH:
            source = self.manifest.base_model.path if self.manifest and self.manifest.base_model else "see its manifest"
            raise InputError(f"--model {self.path}: already an {backend} export; give the model it was exported "
                             f"from ({source})")


def side_by_side(run_torch: Callable[[], T], run_export: Callable[[], T], items: int) \
        -> tuple[T, T, dict[str, float]]:
    """Both backends over the same slice of `items` (texts, pairs, essays, responses), timed one after the
    other in this process: their outputs, and the seconds, items per second and speed-up of each."""
    started = time.perf_counter()
    reference = run_torch()
    torch_seconds = time.perf_counter() - started
    started = time.perf_counter()
    exported = run_export()
    seconds = time.perf_counter() - started
    return reference, exported, {"torch_seconds": round(torch_seconds, 3), "seconds": round(seconds, 3),
                                 "torch_items_per_s": round(items / torch_seconds, 2),
                                 "items_per_s": round(items / seconds, 2),
                                 "speedup": round(torch_seconds / seconds, 2)}


def data_file(data: Path, what: str) -> Path:
    """The check's data file, refused at once (before any model loads) when it is not one."""
    if not Path(data).is_file():
        raise InputError(f"--data {data}: {what}")
    return Path(data)


def publish_export(source: Source, out: Path, config: ExportConfig, check_data: str,
                   write: Callable[[Path], None], check: Callable[[Path], dict[str, Any]],
                   params: dict[str, Any] | None = None) -> Path:
    """Write the export into a staging directory (`write`), check it there (`check` returns the metrics, or
    raises InputError to refuse), publish `<out>/<version>/`; returns that directory."""
    source.refuse_export()
    started = time.time()
    run_hash = hash_json({"source": source.fingerprint, "config": asdict(config), "data": check_data,
                          "edurank": edurank.__version__})
    with staging_dir(out, f"export-{run_hash[:12]}") as work:
        final = fresh_dir(work / "artifact")
        write(final)
        exported_at = time.time()
        metrics = check(final)
        log.info("export %s of %s: %s", config.backend, source.kind, metrics)
        ref = replace(model_ref(source.path, source.fingerprint), path=portable_name(source.path))
        trained = source.manifest if source.manifest is not None and source.manifest.kind == source.kind else None
        # the source's data and params: an export saw what its source trained on (`seen_topics`, OOF figures)
        return publish_artifact(
            final, out, run_hash, kind=source.kind, base_model=ref, data=trained.data if trained else {},
            params={**(trained.params if trained else {}), **(params or {}), **asdict(config)},
            metrics={**metrics, "check_data": check_data},
            seconds={"export": exported_at - started, "check": time.time() - exported_at}, depends=[ref])


def spread_rows(frame: pl.DataFrame, count: int) -> pl.DataFrame:
    """Up to `count` rows spread evenly over a data file (deterministic): a check slice."""
    return frame.gather_every(max(frame.height // count, 1)).head(count)


def refuse(condition: bool, message: str) -> None:
    """A failed agreement check: nothing is published. Checks are written `not metric >= bar`, so a NaN
    figure (a broken graph's constant output, say) fails too."""
    if condition:
        raise InputError(f"{message}; nothing was published")


def find_export(root: Path, kind: str, source_fingerprint: str, backend: str) -> Path | None:
    """The newest export under `root` of the `kind` model with that fingerprint, for that backend; None if none."""
    found = []
    for path in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
        manifest = Manifest.read(path.parent)
        if manifest.kind == kind and manifest.params.get("backend") == backend \
                and manifest.base_model is not None and manifest.base_model.fingerprint == source_fingerprint:
            found.append(path.parent)
    return found[-1] if found else None  # versions sort by time of publishing
