"""The artifact contract: typed manifests, one publish function, refusing old or foreign artifacts."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from edurank.artifacts import (
    LATEST,
    MANIFEST,
    Manifest,
    ModelRef,
    atomic_path,
    hash_json,
    open_artifact,
    publish_artifact,
    read_manifest,
    resolve,
    staging_dir,
    versions,
    weights_fingerprint,
)
from edurank.errors import ArtifactMismatchError, InputError


def publish_one(root: Path, weights: bytes = b"weights", kind: str = "retriever") -> Path:
    with staging_dir(root, "run") as work:
        (work / "model.safetensors").write_bytes(weights)
        return publish_artifact(work, root, hash_json(weights.decode()), kind=kind,
                                base_model=ModelRef("/models/base", "b" * 64), data={"hash": "d" * 64, "files": []},
                                params={"epochs": 1}, metrics={"recall@10": 0.5}, seconds={"train": 1.234},
                                depends=[ModelRef("/models/other", "c" * 64, "retriever", "v0")])


def test_staging_is_removed_on_error_unless_kept(tmp_path: Path) -> None:
    with pytest.raises(ValueError), staging_dir(tmp_path, "run") as work:
        (work / "x").write_text("partial")
        raise ValueError
    assert not (tmp_path / ".run.tmp").exists()
    with pytest.raises(ValueError), staging_dir(tmp_path, "run", keep_on_error=True):
        raise ValueError
    assert (tmp_path / ".run.tmp").is_dir()


def test_atomic_path_replaces_the_file_only_when_the_write_completes(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "frame.parquet"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"first")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first"  # the failed write left the previous file, and no temp beside it
    assert [p.name for p in target.parent.iterdir()] == ["frame.parquet"]


def test_publish_writes_a_typed_manifest_and_points_latest(tmp_path: Path) -> None:
    final = publish_one(tmp_path)
    manifest = Manifest.read(final)
    assert manifest.kind == "retriever" and manifest.version == final.name and manifest.created_at
    assert manifest.weights == weights_fingerprint(final)  # its own weights, not the base model's
    assert manifest.base_model == ModelRef("/models/base", "b" * 64)
    assert manifest.depends == [ModelRef("/models/other", "c" * 64, "retriever", "v0")]
    assert manifest.seconds == {"train": 1.23} and manifest.params == {"epochs": 1}
    assert (tmp_path / LATEST).read_text().strip() == final.name
    assert resolve(tmp_path) == final and resolve(final) == final
    assert not (tmp_path / ".run.tmp").exists()
    assert open_artifact(tmp_path, "retriever")[1] == manifest


def test_a_published_version_is_readable_by_every_user(tmp_path: Path) -> None:
    """safetensors writes 0600 and staging folders are 0700; a service running as another user (the image's
    uid 10001 over models trained on the host) must still read every file."""
    with staging_dir(tmp_path, "run") as work:
        (work / "fold0").mkdir(mode=0o700)
        for path in (work / "model.safetensors", work / "fold0" / "head.safetensors"):
            path.write_bytes(b"weights")
            path.chmod(0o600)
        final = publish_artifact(work, tmp_path, hash_json("private"), kind="retriever", base_model=None,
                                 data={"hash": "d" * 64, "files": []}, params={})
    for path in (final, *final.rglob("*")):
        wanted = 0o555 if path.is_dir() else 0o444
        assert path.stat().st_mode & wanted == wanted, f"{path.relative_to(tmp_path)}: {path.stat().st_mode:o}"
    assert (tmp_path / LATEST).stat().st_mode & 0o444 == 0o444


def test_the_same_run_cannot_overwrite_a_published_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edurank.artifacts.new_version", lambda run_hash: "v1")
    publish_one(tmp_path)
    with pytest.raises(InputError, match="already exists"):
        publish_one(tmp_path)


def publish_run(root: Path, weights: bytes = b"weights", staging: str = "run") -> Path:
    """One publish of the same run hash each time (the same content), from its own staging directory."""
    with staging_dir(root, staging) as work:
        (work / "model.safetensors").write_bytes(weights)
        return publish_artifact(work, root, "f" * 64, kind="index", base_model=None, data={}, params={})


def test_the_same_run_published_again_within_a_second_gets_a_new_version(tmp_path: Path) -> None:
    published = [publish_run(tmp_path) for _ in range(20)]
    names = [p.name for p in published]
    assert max(Counter(name[:15] for name in names).values()) > 1  # some fell in one second, as a quick rebuild does
    assert len(set(names)) == 20 and names == sorted(names)  # distinct, and sorted as they were published
    assert all(re.fullmatch(r"\d{8}-\d{6}\.\d{6}-ffffffff", name) for name in names)
    assert all(Manifest.read(p).version == p.name for p in published)
    assert (tmp_path / LATEST).read_text().strip() == names[-1] and resolve(tmp_path) == published[-1]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or temp file left


BARRIER: Any = None  # each worker's handle on the barrier all of them wait at


def join_barrier(barrier: Any) -> None:
    global BARRIER
    BARRIER = barrier


def publish_in_a_process(root: str, worker: int) -> list[str]:
    BARRIER.wait()  # every process starts publishing at the same moment
    return [publish_run(Path(root), f"weights {worker} {i}".encode(), f"worker{worker}").name for i in range(5)]


def test_publishes_from_several_processes_at_once_all_land(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # quick to start; the workers only write files
    barrier = context.Barrier(4)
    with context.Pool(4, initializer=join_barrier, initargs=(barrier,)) as pool:
        runs = pool.starmap(publish_in_a_process, [(str(tmp_path), worker) for worker in range(4)])
    published = [name for names in runs for name in names]
    assert len(set(published)) == 20  # none refused, none overwritten
    on_disk = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert on_disk == sorted(published)
    for name in published:
        assert Manifest.verified(tmp_path / name).version == name
    assert (tmp_path / LATEST).read_text().strip() == max(published)  # LATEST names the newest
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_job_of_the_same_run_running_at_once_gets_its_own_staging(tmp_path: Path) -> None:
    with staging_dir(tmp_path, "index-abc") as first, staging_dir(tmp_path, "index-abc") as second:
        assert first != second and first.is_dir() and second.is_dir()  # the second left the live first alone
    killed = tmp_path / ".index-abc.123-dead.tmp"  # what a killed job leaves: no one holds its lock
    killed.mkdir()
    with staging_dir(tmp_path, "index-abc") as work:
        assert not killed.exists() and work.is_dir()


def test_another_kind_or_an_old_manifest_is_refused_with_what_to_do(tmp_path: Path) -> None:
    final = publish_one(tmp_path)
    with pytest.raises(ArtifactMismatchError, match="a 'retriever' artifact, not a 'reranker' one"):
        open_artifact(final, "reranker")
    old = read_manifest(final)
    del old["format"]
    old["fingerprint"] = old.pop("weights")  # what edurank wrote before the shared contract
    (final / MANIFEST).write_text(json.dumps(old))
    with pytest.raises(ArtifactMismatchError, match="older edurank .* `edurank train retriever`"):
        open_artifact(final, "retriever")


def test_each_file_is_listed_and_checked_when_loaded(tmp_path: Path) -> None:
    final = publish_one(tmp_path, b"weights")
    (final / "extra.txt").write_text("a log written later is not part of the version")
    listed = Manifest.read(final).files
    assert listed == {"model.safetensors": {"size": 7, "sha256": hashlib.sha256(b"weights").hexdigest()}}
    open_artifact(final, "retriever")
    (final / "model.safetensors").write_bytes(b"weightz")  # same size, other bytes
    with pytest.raises(ArtifactMismatchError, match="model.safetensors does not match its sha256.*`edurank train"):
        open_artifact(final, "retriever")
    (final / "model.safetensors").write_bytes(b"w")
    with pytest.raises(ArtifactMismatchError, match="has 1 bytes, not 7"):
        Manifest.verified(final)
    (final / "model.safetensors").unlink()
    with pytest.raises(ArtifactMismatchError, match="model.safetensors is missing"):
        Manifest.verified(final)


def test_weights_fingerprint_follows_the_weight_bytes(tmp_path: Path) -> None:
    first, second = publish_one(tmp_path / "a", b"one"), publish_one(tmp_path / "b", b"two")
    assert Manifest.read(first).weights != Manifest.read(second).weights
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no weights file"):
        weights_fingerprint(empty)


def test_resolve_refuses_a_folder_without_artifacts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither an artifact version"):
        resolve(tmp_path)


def test_versions_to_serve_are_latest_then_the_others_newest_first(tmp_path: Path) -> None:
    """What a server tries in turn when the newest fails: LATEST (here moved back by hand), then by version."""
    first, second, third = (publish_one(tmp_path, weights) for weights in (b"a", b"b", b"c"))
    assert versions(tmp_path) == [third, second, first] and versions(second) == [second]
    (tmp_path / LATEST).write_text(second.name + "\n")
    assert versions(tmp_path) == [second, third, first] and resolve(tmp_path) == second
    assert versions(tmp_path / "none") == []


def test_hash_json_ignores_key_order() -> None:
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})
