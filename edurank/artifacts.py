"""The one artifact contract: every trained model and index is a versioned directory `<root>/<version>/`
holding the files its served class's `save()` wrote and a typed manifest.json, published by one function.

Writers fill a hidden staging sibling and `publish_artifact` renames it into place only when complete, then
points `<root>/LATEST` at it, so a failed job never leaves a half-written version or moves what is served.
The manifest says what the artifact is (kind, version), what it is (`weights`: a fingerprint of its own
weight files), what it came from (base model, data, the artifacts it depends on, parameters) and how good and
how slow it was (metrics, seconds). Manifests written before this contract (no `format`) are refused with
the command that rebuilds them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import edurank
from edurank.errors import ArtifactMismatchError, InputError

MANIFEST = "manifest.json"
LATEST = "LATEST"
FORMAT = 2  # manifest layout; 1 (no field) was written before the shared contract
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".faiss", ".joblib", ".lgbm")
VERSION_SHAPE = re.compile(r"\d{8}-\d{6}")  # what new_version names start with (older ones had no sub-second)
REBUILD = {"retriever": "edurank train retriever", "reranker": "edurank train reranker",
           "ranker": "edurank train ranker", "essays": "edurank train essays",
           "classifier": "edurank train classifier", "index": "edurank index"}


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
    """A sortable version name: UTC time of completion to the microsecond plus the first characters of the
    run's hash, `20250102-030405.123456-1a2b3c4d`. `claim_version` makes it unique."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(seconds))}.{micros:06d}-{run_hash[:8]}"


def claim_version(root: Path, run_hash: str, attempts: int = 100) -> str:
    """A new version name, reserved by creating its empty directory: mkdir either creates it or fails, so two
    publishes (the same run in the same second, or two processes at once) never get one name. A taken name is
    retried on the next microsecond; only a clock that never moves runs out of attempts."""
    for _ in range(attempts):
        version = new_version(run_hash)
        try:
            (root / version).mkdir()
            return version
        except FileExistsError:
            time.sleep(1e-6)
    raise InputError(f"{root / version} already exists; refusing to overwrite a published version")


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (flock; released when the block ends or the process dies)."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def try_lock(directory: Path) -> int | None:
    """An open handle holding the exclusive lock on `directory`; None where another process holds it."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    return handle


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


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a hidden temp path beside `path` to write; it is renamed onto `path` only when the block
    succeeds, so readers (and reruns that test `path.is_file()`) never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")  # its own: writers may race
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_save_array(path: Path, array: np.ndarray) -> None:
    """np.save through `atomic_path` (into an open file: np.save would add `.npy` to the temp name)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


@contextlib.contextmanager
def staging_dir(root: Path, name: str, keep_on_error: bool = False) -> Iterator[Path]:
    """Yield a job's working directory below `root`: the job publishes it (or a directory inside it) with
    `publish_artifact`, and what is left is removed on success. On error it is removed too, unless
    `keep_on_error` (trainers keep `<root>/.<name>.tmp`: it holds the checkpoints a rerun resumes from).
    Other jobs get a directory of their own, `<root>/.<name>.<id>.tmp`, locked while they run, so two jobs
    of the same run at once never write into one; one a killed job left is removed by the next."""
    root.mkdir(parents=True, exist_ok=True)
    if keep_on_error:
        tmp = root / f".{name}.tmp"
        tmp.mkdir(exist_ok=True)
        handle = None
    else:
        tmp, handle = private_staging(root, name)
    try:
        yield tmp
    except BaseException:
        if not keep_on_error:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if handle is not None:
            os.close(handle)
    shutil.rmtree(tmp, ignore_errors=True)


def private_staging(root: Path, name: str) -> tuple[Path, int]:
    """A new `<root>/.<name>.<id>.tmp` and the open handle that holds its lock; those of the same name that no
    live job holds (killed jobs') are removed first. Under the lock on `root`, so no job removes another's
    before that one holds it."""
    with locked(root):
        for stale in root.glob(f".{glob.escape(name)}.*.tmp"):
            if stale.is_dir() and (handle := try_lock(stale)) is not None:
                shutil.rmtree(stale, ignore_errors=True)
                os.close(handle)
        tmp = root / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        tmp.mkdir()
        handle = try_lock(tmp)
    assert handle is not None  # a directory this process just made under the root's lock
    return tmp, handle


def fresh_dir(path: Path) -> Path:
    """An empty directory at `path` (what an interrupted run left there is removed)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def weights_fingerprint(directory: Path) -> str:
    """Identity of a model directory's weights: sha256 over its weight files' bytes in path order (an HF or
    sentence-transformers dir, a trained artifact, an index alike)."""
    files = sorted(p for p in Path(directory).rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    # an ONNX export's graphs are its weights (beside regressors, for an essay scorer); HF snapshots that also
    # ship onnx/*.onnx keep their torch identity
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        files = sorted({*files, *Path(directory).rglob("*.onnx")})
    if not files:
        raise InputError(f"model '{directory}': no weights file "
                         f"({', '.join('*' + s for s in (*WEIGHT_SUFFIXES, '.onnx'))})")
    return hash_files(files)


@dataclass(frozen=True)
class ModelRef:
    """A model or artifact another one was built from, by path and weights fingerprint."""

    path: str
    fingerprint: str
    kind: str | None = None  # an edurank artifact's kind; None for a plain HF / ST model
    version: str | None = None


@dataclass
class Manifest:
    """manifest.json of every artifact. `details` holds what only one kind has (an index's size, a reranker's
    calibration and rule); `seconds` the wall time of each stage that built it."""

    kind: str
    version: str
    weights: str
    base_model: ModelRef | None
    data: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    depends: list[ModelRef] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    edurank: str = edurank.__version__
    format: int = FORMAT
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> size, sha256: what loading checks

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: Path | str) -> Manifest:
        kind = values.get("kind", "unknown")
        if values.get("format") != FORMAT:
            command = REBUILD.get(kind, "the command that built it")
            raise ArtifactMismatchError(f"{where}: a '{kind}' artifact written by an older edurank (manifest "
                                        f"format {values.get('format', 1)}, this edurank reads {FORMAT}); "
                                        f"rebuild it with `{command}`")
        try:
            base = values["base_model"]
            return cls(**{**values, "base_model": ModelRef(**base) if base else None,
                          "depends": [ModelRef(**d) for d in values["depends"]]})
        except (KeyError, TypeError) as err:
            raise ArtifactMismatchError(f"{where}: manifest fields do not match format {FORMAT} ({err})") from err

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls.from_dict(read_manifest(directory), directory)

    @classmethod
    def verified(cls, directory: Path) -> Manifest:
        """The manifest, once every file it lists is checked (what loaders call before serving a version)."""
        manifest = cls.read(directory)
        manifest.verify(directory)
        return manifest

    def verify(self, directory: Path) -> None:
        """Refuse a version whose files are not the ones published: missing, resized, or with other bytes
        (a shuffled id map, a damaged index are still valid files). Manifests written before file lists
        (no `files`) are not checked."""
        problems = []
        for name, expected in self.files.items():
            path = Path(directory) / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif path.stat().st_size != expected["size"]:
                problems.append(f"{name} has {path.stat().st_size} bytes, not {expected['size']}")
            elif hash_files([path]) != expected["sha256"]:
                problems.append(f"{name} does not match its sha256")
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ArtifactMismatchError(f"{directory}: damaged: {'; '.join(problems[:3])}{more}; rebuild it with "
                                        f"`{REBUILD.get(self.kind, 'the command that built it')}`")


def inventory(directory: Path) -> dict[str, dict[str, Any]]:
    """Every file of an artifact (its manifest aside) with its size and sha256, as the manifest lists them."""
    return {path.relative_to(directory).as_posix(): {"size": path.stat().st_size, "sha256": hash_files([path])}
            for path in sorted(Path(directory).rglob("*")) if path.is_file() and path.name != MANIFEST}


def model_ref(path: Path, fingerprint: str) -> ModelRef:
    """A reference to a model directory: an artifact's kind and version come from its manifest."""
    if (path / MANIFEST).is_file():
        manifest = Manifest.read(path)
        return ModelRef(str(path), fingerprint, manifest.kind, manifest.version)
    return ModelRef(str(path), fingerprint)


def publish_artifact(staging: Path, root: Path, run_hash: str, *, kind: str, base_model: ModelRef | None,
                     data: dict[str, Any], params: dict[str, Any], metrics: dict[str, Any] | None = None,
                     seconds: dict[str, float] | None = None, depends: Sequence[ModelRef] = (),
                     details: dict[str, Any] | None = None) -> Path:
    """The one way an artifact is published: fingerprint the weights `staging` holds, write its manifest,
    rename it to `<root>/<version>` (a name no other publish gets, see `claim_version`) and point LATEST at
    it. Every writer calls this."""
    weights, files = weights_fingerprint(staging), inventory(staging)
    root.mkdir(parents=True, exist_ok=True)
    version = claim_version(root, run_hash)
    final = root / version
    try:
        manifest = Manifest(kind=kind, version=version, weights=weights, base_model=base_model, data=data,
                            params=params, metrics=metrics or {},
                            seconds={k: round(v, 2) for k, v in (seconds or {}).items()}, depends=list(depends),
                            details=details or {}, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            files=files)
        write_manifest(staging, manifest.to_dict())
        share_read(staging)
        os.replace(staging, final)  # onto the empty directory that reserved the name
    except BaseException:
        with contextlib.suppress(OSError):
            final.rmdir()  # the reservation, still empty: nothing was published
        raise
    point_latest(root, version)
    return final


def share_read(directory: Path) -> None:
    """Make a version readable by every user (files a+r, folders a+rx) before it is published: safetensors and
    temp folders are private (0600, 0700), and a service running as another user, such as the image's uid
    10001 over models trained on the host, must read them."""
    for path in (directory, *directory.rglob("*")):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


def point_latest(root: Path, version: str) -> None:
    """Point `<root>/LATEST` at `version`, unless it already names a newer published version (another publish
    finished first with a later name): LATEST moves only forward, so it names the newest of those at once."""
    with locked(root):
        latest = root / LATEST
        current = latest.read_text().strip() if latest.is_file() else ""
        if (VERSION_SHAPE.match(current) and VERSION_SHAPE.match(version) and current > version
                and (root / current / MANIFEST).is_file()):
            return
        atomic_write_text(latest, version + "\n")


def resolve(path: str | Path) -> Path:
    """Accept a version directory, or an artifact root (its LATEST, else its newest version)."""
    found = versions(path)
    if not found:
        raise InputError(f"{path}: neither an artifact version (no {MANIFEST}) nor a folder of versions")
    return found[0]


def versions(path: str | Path) -> list[Path]:
    """The versions to serve from `path`, best first: a version directory alone; for an artifact root, the one
    its LATEST names, then the others newest first (a server falls back to them when the newest fails)."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return [path]
    found = sorted((p for p in path.glob("*") if (p / MANIFEST).is_file() and not p.name.startswith(".")),
                   reverse=True)
    latest = path / LATEST
    named = path / latest.read_text().strip() if latest.is_file() else None
    return sorted(found, key=lambda version: version != named)  # stable: LATEST first, the rest newest first


def open_artifact(path: str | Path, kind: str) -> tuple[Path, Manifest]:
    """The version directory and manifest of an artifact of `kind` (given a version dir or its root);
    another kind, a manifest of an older format, or damaged files are refused."""
    path = resolve(path)
    manifest = Manifest.verified(path)
    if manifest.kind != kind:
        raise ArtifactMismatchError(f"{path}: a '{manifest.kind}' artifact, not a '{kind}' one")
    return path, manifest


def covered_oof(path: Path, name: str) -> pl.DataFrame:
    """The rows of an artifact's stored out-of-fold predictions (`name`, a parquet file) that they cover."""
    file = path / name
    if not file.is_file():
        raise InputError(f"{path}: no {name}")
    return pl.read_parquet(file).filter(pl.col("covered"))
