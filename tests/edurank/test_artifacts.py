from __future__ import annotations

from pathlib import Path

import pytest

from edurank.artifacts import LATEST, hash_json, publish, read_manifest, resolve, staging_dir, write_manifest
from edurank.errors import InputError


def test_staging_is_removed_on_error_unless_kept(tmp_path: Path) -> None:
    with pytest.raises(ValueError), staging_dir(tmp_path, "run") as work:
        (work / "x").write_text("partial")
        raise ValueError
    assert not (tmp_path / ".run.tmp").exists()
    with pytest.raises(ValueError), staging_dir(tmp_path, "run", keep_on_error=True):
        raise ValueError
    assert (tmp_path / ".run.tmp").is_dir()


def test_publish_renames_and_points_latest(tmp_path: Path) -> None:
    with staging_dir(tmp_path, "a") as work:
        write_manifest(work, {"version": "v1"})
        final = publish(work, tmp_path, "v1")
    assert read_manifest(final) == {"version": "v1"}
    assert (tmp_path / LATEST).read_text().strip() == "v1"
    assert resolve(tmp_path) == final and resolve(final) == final
    with staging_dir(tmp_path, "b") as work, pytest.raises(InputError, match="already exists"):
        publish(work, tmp_path, "v1")


def test_resolve_refuses_a_folder_without_artifacts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither an artifact version"):
        resolve(tmp_path)


def test_hash_json_ignores_key_order() -> None:
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})
