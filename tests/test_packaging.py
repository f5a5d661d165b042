"""The wheel, built and installed away from the checkout: one top-level package (`edurank`), every module in
it importable from the installed copy, and the `edurank` script working.

The repository's folders are mapped into `edurank.<folder>` by pyproject's [tool.setuptools] `packages` list and
`package-dir` map; a subpackage missing from that list would still import in development (the dev install is
editable, and its finder maps whole folders) but would be absent from the wheel. So the wheel is built from a
copy of the build context (tracked and untracked-but-not-ignored files, as a fresh checkout would have; the
copy also keeps setuptools' build/ and egg-info out of the working tree) and installed into a fresh venv.

The fresh venv sees this environment's packages for its dependencies (torch, faiss, ...) through a
`_parent_packages.pth` listing site.getsitepackages(). That does not let the editable install
in: a directory named in a .pth line is only appended to sys.path, its own .pth files (among
them `__editable__.edurank-*.pth`, which installs the finder that maps edurank to the checkout) are never run.
The venv's own site-packages comes before the parent's, so its edurank wins; the test still checks every
module's __file__ lies inside the fresh venv, and runs from a directory outside the repository with
PYTHONPATH unset, so neither the checkout nor the editable finder can answer an import unnoticed.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# top-level folders that are not shipped: tests and benchmarks run from the checkout
UNSHIPPED = {"tests", "bench", "scripts", "docs"}


def context_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    return [relative for relative in listed if relative and (ROOT / relative).is_file()]


def mapped_folders() -> dict[str, Path]:
    """package name -> folder, from the package-dir map (`edurank` is the edurank/ folder itself)."""
    return {name: ROOT / folder for name, folder in SETUPTOOLS["package-dir"].items()}


def source_packages() -> set[str]:
    """Every folder with an __init__.py under the mapped folders, as the dotted name it installs under."""
    found = set()
    for name, folder in mapped_folders().items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            if "__pycache__" not in relative and not any(part.startswith(".") for part in relative):
                found.add(".".join((name, *relative)))
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("wheel")
    source = scratch / "source"
    for relative in context_files():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, source / relative)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(scratch / "dist"), str(source)], check=True, timeout=300)
    (built,) = (scratch / "dist").glob("edurank-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel, with this environment's site-packages (not its .pth hooks) behind it."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    packages = next(venv.glob("lib/python*/site-packages"))
    (packages / "_parent_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # pip comes from the parent's packages; --ignore-installed so it neither skips the wheel nor uninstalls the
    # parent's (editable) edurank that it can see
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--ignore-installed", "--disable-pip-version-check", str(wheel)], check=True, timeout=300)
    return venv


def outside_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1"}


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (record,) = [name for name in names if name.endswith(".dist-info/RECORD")]
        recorded = [line.split(",")[0] for line in archive.read(record).decode().splitlines() if line]
        top_level = [name for name in names if name.endswith(".dist-info/top_level.txt")]
        if top_level:
            assert archive.read(top_level[0]).decode().split() == ["edurank"]
    dist_info = record.split("/")[0]
    assert dist_info.startswith("edurank-") and dist_info.endswith(".dist-info")
    strays = [name for name in recorded if name.split("/")[0] not in ("edurank", dist_info)]
    assert not strays, f"files outside edurank/ in the wheel: {strays}"
    assert sorted(recorded) == sorted(names), "RECORD and the archive disagree"


def test_the_wheel_holds_every_module_of_the_mapped_folders(wheel: Path) -> None:
    """Each .py file of the build context under a mapped folder is in the wheel, at its mapped path."""
    shipped = set()
    for name, folder in mapped_folders().items():
        prefix = folder.relative_to(ROOT).as_posix() + "/"
        shipped |= {"/".join((*name.split("."), relative[len(prefix):])) for relative in context_files()
                    if relative.startswith(prefix) and relative.endswith(".py")}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if name.endswith(".py")}
    assert sorted(shipped - in_wheel) == [], "modules the wheel leaves out"
    assert sorted(in_wheel - shipped) == [], "modules in the wheel that the build context lacks"
    assert any(name.startswith("edurank/sample_catalog/") for name in archive.namelist())
    pages = {f"edurank/{relative}" for relative in context_files()
             if relative.startswith(("service/templates/", "service/static/"))}  # the review page's files
    assert pages and sorted(pages - set(archive.namelist())) == [], "page files the wheel leaves out"


def test_pyproject_lists_every_package_folder() -> None:
    """A new subpackage (a folder with an __init__.py) must be named in `packages`, or the wheel lacks it."""
    listed = SETUPTOOLS["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    assert sorted(listed) == sorted(source_packages())
    for name in SETUPTOOLS["package-dir"]:
        assert name == "edurank" or name.startswith("edurank."), f"{name} would install outside edurank"


def test_every_top_level_package_folder_is_mapped() -> None:
    """A new top-level folder of package code must be mapped into edurank, or it never reaches the wheel."""
    mapped = set(mapped_folders().values())
    package_folders = {path.parent for path in ROOT.glob("*/__init__.py")}
    assert sorted(p.name for p in package_folders - mapped if p.name not in UNSHIPPED) == []


def test_every_module_imports_from_the_installed_wheel(wheel: Path, venv: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        modules = sorted(name[: -len(".py")].removesuffix("/__init__").replace("/", ".")
                         for name in archive.namelist() if name.endswith(".py"))
    # importing a __main__ module runs it (edurank.cli.__main__ is the CLI itself)
    modules = [module for module in modules if module.rsplit(".", 1)[-1] != "__main__"]
    assert "edurank.service.app" in modules and "edurank.reranker.lightgbm" in modules
    probe = """
import importlib, json, sys, traceback
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.import_module(name).__file__
    except BaseException:
        found[name] = "FAILED: " + traceback.format_exc(limit=-3)
print(json.dumps(found))
"""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run([str(venv / "bin" / "python"), "-c", probe, *modules], cwd=outside,
                            env=outside_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    failed = {name: where for name, where in found.items() if where.startswith("FAILED")}
    assert not failed, "\n".join(f"{name}: {where}" for name, where in failed.items())
    elsewhere = {name: where for name, where in found.items()
                 if not Path(where).resolve().is_relative_to(venv.resolve())}
    assert not elsewhere, f"modules imported from outside the installed wheel: {elsewhere}"


def test_the_installed_script_answers(venv: Path, tmp_path: Path) -> None:
    for command in ([str(venv / "bin" / "edurank"), "--help"],
                    [str(venv / "bin" / "python"), "-m", "edurank.cli", "--help"]):
        result = subprocess.run(command, cwd=tmp_path, env=outside_env(), capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        assert "usage: edurank" in result.stdout, result.stdout
