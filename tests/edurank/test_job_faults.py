"""A job that fails while writing (a full disk, a read-only folder, a kill) publishes nothing, leaves the
previous version as LATEST, says what failed in one line, and the service keeps serving that version."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edurank.artifacts import LATEST
from edurank.cli.main import main
from edurank.service.app import create_app
from edurank.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def versions(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture
def published(tiny_catalog: Path, tmp_path: Path) -> tuple[Path, str]:
    """An index root holding one published version."""
    root = tmp_path / "artifacts" / "index"
    assert main(["index", "--catalog", str(tiny_catalog), "--out", str(root)]) == 0
    return root, (root / LATEST).read_text().strip()


def still_serving(tiny_catalog: Path, root: Path, version: str) -> None:
    settings = Settings(artifacts=root.parent, catalog=tiny_catalog, train_ranker=False, background_load=False,
                        build_index=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").json()["registry"]["versions"]["index"] == version


@pytest.mark.parametrize(("target", "code", "says"), [
    ("edurank.retriever.content_index.faiss.write_index", errno.ENOSPC, "No space left on device"),
    ("edurank.artifacts.os.replace", errno.EROFS, "Read-only file system"),
])
def test_a_write_that_fails_publishes_nothing_and_says_so(
        published: tuple[Path, str], tiny_catalog: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, target: str, code: int, says: str) -> None:
    root, version = published

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(root / "index.faiss"))

    monkeypatch.setattr(target, fail)
    assert main(["index", "--catalog", str(tiny_catalog), "--out", str(root), "--no-topics"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("edurank: error")]
    assert len(errors) == 1 and says in errors[0] and errors[0].endswith("without publishing what it was writing")
    assert versions(root) == [version] and (root / LATEST).read_text().strip() == version
    assert not any(p.name.startswith(".") for p in root.iterdir() if p.is_dir())  # no staging left behind
    monkeypatch.undo()
    still_serving(tiny_catalog, root, version)


def test_a_job_killed_mid_write_leaves_the_previous_version_serving(published: tuple[Path, str],
                                                                   tiny_catalog: Path) -> None:
    root, version = published
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal
import edurank.retriever.content_index
def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)  # as an OOM kill or a pulled plug would, half-way through saving
edurank.retriever.content_index.faiss.write_index = die
from edurank.cli.main import main
main(["index", "--catalog", {str(tiny_catalog)!r}, "--out", {str(root)!r}, "--no-topics"])
"""], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert killed.returncode == -9
    assert versions(root) == [version] and (root / LATEST).read_text().strip() == version
    still_serving(tiny_catalog, root, version)
    assert main(["index", "--catalog", str(tiny_catalog), "--out", str(root), "--no-topics"]) == 0  # a rerun
    assert len(versions(root)) == 2 and not any(p.name.startswith(".") for p in root.iterdir())
