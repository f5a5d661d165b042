"""No Docker engine runs in CI, so the image's recipe is checked here: it installs with the README's own
script (which CI runs), copies only what exists and is not ignored, and runs as a non-root user."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_the_image_installs_with_the_readme_setup_script() -> None:
    assert re.search(r"^RUN bash scripts/setup\.sh$", DOCKERFILE, re.M)
    assert "bash scripts/setup.sh" in (ROOT / "Makefile").read_text()


def test_the_build_context_holds_every_package_pyproject_installs() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert re.findall(r"^COPY (.+)$", DOCKERFILE, re.M) == [". ."]
    include = re.search(r"^include = \[(.+)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    packages = [name.strip(' "*') for name in include.group(1).split(",")]
    assert packages and all((ROOT / package / "__init__.py").is_file() for package in packages)
    for needed in (*packages, "pyproject.toml", "README.md", "scripts"):
        assert not any(fnmatch.fnmatch(needed, pattern) for pattern in ignored), needed


def test_non_root_healthcheck_and_artifacts_mount() -> None:
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", DOCKERFILE, re.M)
    assert "EDURANK_ARTIFACTS=/artifacts" in DOCKERFILE and 'VOLUME ["/artifacts"]' in DOCKERFILE
    assert DOCKERFILE.splitlines()[-1].startswith("CMD") and "serve" in DOCKERFILE.splitlines()[-1]
