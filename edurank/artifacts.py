"""Versioned artifact directories: `<root>/<version>/` with a manifest.json, written atomically.

Writers fill a hidden `.<name>.tmp` sibling and rename it into place only when complete, then point
`<root>/LATEST` at it, so a failed job never leaves a half-written version or moves what is served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from edurank.errors import ArtifactMismatchError, InputError

MANIFEST = "manifest.json"
LATEST = "LATEST"


def hash_files(paths: Iterable[Path], chunk: int = 1 << 20) -> str:
    """sha256 over the bytes of the given files, in the order given (names are not hashed)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def hash_json(value: Any) -> str:
    """Stable sha256 of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def new_version(run_hash: str) -> str:
    """A sortable version name: UTC time of completion plus the first characters of the run's hash."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + run_hash[:8]


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json via a temp file and rename, so readers never see a partial manifest."""
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str))


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{directory}: no {MANIFEST}; not an edurank artifact directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: broken JSON ({err})") from err


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def staging_dir(root: Path, name: str, keep_on_error: bool = False) -> Iterator[Path]:
    """Yield `<root>/.<name>.tmp`; the caller publishes it with `publish`. On error it is removed,
    unless `keep_on_error` (trainers keep it: it holds the checkpoints a rerun resumes from)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp"
    tmp.mkdir(exist_ok=True)
    try:
        yield tmp
    except BaseException:
        if not keep_on_error:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp: Path, root: Path, version: str) -> Path:
    """Rename a finished staging directory to `<root>/<version>` and point LATEST at it."""
    final = root / version
    if final.exists():
        raise InputError(f"{final} already exists; refusing to overwrite a published version")
    os.replace(tmp, final)
    atomic_write_text(root / LATEST, version + "\n")
    return final


def resolve(path: str | Path) -> Path:
    """Accept a version directory, or an artifact root (its LATEST, else its newest version)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    latest = path / LATEST
    if latest.is_file():
        candidate = path / latest.read_text().strip()
        if (candidate / MANIFEST).is_file():
            return candidate
    versions = sorted(p for p in path.glob("*") if (p / MANIFEST).is_file() and not p.name.startswith("."))
    if versions:
        return versions[-1]
    raise InputError(f"{path}: neither an artifact version (no {MANIFEST}) nor a folder of versions")


def open_artifact(path: str | Path, kind: str, what: str) -> tuple[Path, dict[str, Any]]:
    """The version directory and manifest of an artifact of `kind` (given a version dir or its root);
    another kind is refused, the error saying it is not `what`."""
    path = resolve(path)
    manifest = read_manifest(path)
    if manifest.get("kind") != kind:
        raise ArtifactMismatchError(f"{path}: a '{manifest.get('kind')}' artifact, not {what}")
    return path, manifest


def covered_oof(path: Path, name: str) -> pl.DataFrame:
    """The rows of an artifact's stored out-of-fold predictions (`name`, a parquet file) that they cover."""
    file = path / name
    if not file.is_file():
        raise InputError(f"{path}: no {name}")
    return pl.read_parquet(file).filter(pl.col("covered"))
