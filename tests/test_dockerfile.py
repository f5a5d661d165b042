"""The image, replayed: no Docker engine runs here or in CI, so the Dockerfile's own steps are carried out
into a scratch root (its ENV, one COPY of the build context filtered by .dockerignore, its setup RUN into
the image's venv path) and compose.yaml's two services are started from there as compose would: the
one-shot index job, then the API on its CMD, judged healthy by the image's own HEALTHCHECK command. A
package left out of the copy, a setup step that fails, or a service that never gets ready fails here.

Not replayed: `useradd`/`chown` (needs root; the USER line is checked instead) and the base image (the
test's own Python stands in for python:3.11-slim). The setup script runs against a venv that sees this
environment's installed packages, so it installs edurank itself without downloading torch again.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import site
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile line, continuations joined and comments dropped."""
    joined, steps = "", []
    for line in dockerfile.splitlines():
        if not joined and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (joined + line).strip().partition(" ")
        steps.append((keyword.upper(), arguments.strip()))
        joined = ""
    return steps


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves a path out: a pattern matches the path or one of its parent folders."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def copy_context(destination: Path) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for relative in tracked:
        if (ROOT / relative).is_file() and not ignored(relative, patterns):
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, destination / relative)


def interpolate(text: str, env: dict[str, str]) -> str:
    """compose's `${NAME}` and `${NAME:-default}`."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Replay:
    """The image's file system under a scratch root: image paths (/opt/edurank, /artifacts) map below it."""

    def __init__(self, root: Path) -> None:
        self.root, self.env, self.workdir = root, dict(os.environ), root
        self.steps = instructions((ROOT / "Dockerfile").read_text())

    def path(self, text: str) -> str:
        for image_path in ("/opt/edurank", "/artifacts", "/catalog"):
            text = text.replace(image_path, str(self.root) + image_path)
        return text

    def build(self) -> None:
        for keyword, arguments in self.steps:
            if keyword == "ENV":
                self.env.update({name: self.path(value) for name, value in
                                 (pair.split("=", 1) for pair in shlex.split(arguments))})
            elif keyword == "WORKDIR":
                self.workdir = Path(self.path(arguments))
                self.workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                assert arguments == ". .", "the image copies its build context once (a list of folders drifts)"
                copy_context(self.workdir)
            elif keyword == "RUN" and "setup.sh" in arguments:
                self.prepare_venv(Path(self.env["VENV"]))
                subprocess.run(arguments, shell=True, cwd=self.workdir, env=self.env, check=True, timeout=600)
        (self.root / "artifacts").mkdir(exist_ok=True)

    @staticmethod
    def prepare_venv(venv: Path) -> None:
        """The image's venv path, seeing this environment's packages (not its editable edurank)."""
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        packages = next(venv.glob("lib/python*/site-packages"))
        (packages / "_parent_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    def command(self, keyword: str) -> list[str]:
        arguments = next(arguments for key, arguments in self.steps if key == keyword)
        return [self.path(part) for part in json.loads(arguments[arguments.index("["):])]


def test_the_image_starts_and_serves_as_compose_runs_it(tmp_path: Path) -> None:
    image = Replay(tmp_path / "image")
    image.build()
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    python = Path(image.env["VENV"]) / "bin" / "python"
    probe = "import edurank.classifier, edurank.essays, edurank.service.app; print(edurank.service.app.__file__)"
    where = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=image.env, capture_output=True, text=True,
                           check=True).stdout
    assert where.startswith(str(image.workdir)), "the service must run from the image's copy"

    def service_env(name: str) -> dict[str, str]:
        declared = compose["services"][name]["environment"].items()
        return {**image.env, **{key: image.path(interpolate(str(value), {})) for key, value in declared}}

    index = compose["services"]["index"]
    command = [image.path(interpolate(part, {})) for part in index["command"]]
    subprocess.run(command, cwd=image.workdir, env=service_env("index"), check=True, timeout=600)

    api = compose["services"]["api"]
    port = free_port()
    environment = {**service_env("api"), "EDURANK_HOST": "127.0.0.1", "EDURANK_PORT": str(port)}
    assert api.get("command") is None and environment["EDURANK_BUILD_INDEX"] == "false"
    server = subprocess.Popen(image.command("CMD"), cwd=image.workdir, env=environment)
    try:
        healthcheck = image.command("HEALTHCHECK")
        deadline = time.monotonic() + 300
        while subprocess.run(healthcheck, env=environment, capture_output=True).returncode != 0:
            assert server.poll() is None, "the service exited"
            assert time.monotonic() < deadline, "the image's HEALTHCHECK never passed"
            time.sleep(2)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/recommend", method="POST",
                                         data=b'{"topic": {"title": "Adding fractions"}}',
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200 and json.loads(response.read())["items"]
    finally:
        server.terminate()
        server.wait(30)


def test_the_image_runs_as_a_user_and_checks_readiness() -> None:
    steps = instructions((ROOT / "Dockerfile").read_text())
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert "/ready" in next(arguments for keyword, arguments in steps if keyword == "HEALTHCHECK")


def test_dockerignore_matching_follows_docker() -> None:
    assert ignored("tests/service/test_api.py", ["tests"]) and ignored("a/b/__pycache__/x.pyc", ["**/__pycache__"])
    assert not ignored("service/app.py", ["tests", "**/__pycache__"])
