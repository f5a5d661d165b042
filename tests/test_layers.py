"""Layers import one way: ground <- model families <- pipelines <- jobs <- entry points.

An AST check rather than import-linter: the package's folders are mapped into `edurank.*` by setuptools'
package-dir, which import-linter's scanner (it walks `edurank/` on disk) cannot follow. Every import counts,
those inside functions too, so a reversed dependency cannot hide in a lazy import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (module prefix, layer); the longest matching prefix wins. Within the family layer, a family may import only
# the families listed for it in FAMILY_IMPORTS (stage 2 reads stage 1's texts and candidates).
LAYERS = {
    "edurank": 0,  # ground: artifacts, options, errors, timing, folds, encoders, layers, plots, backends
    "edurank.retriever": 1, "edurank.reranker": 1, "edurank.essays": 1, "edurank.classifier": 1,
    "edurank.pipelines": 2,
    "edurank.training": 3,
    "edurank.cli": 4, "edurank.service": 4,
}
LAYER_NAMES = ["ground", "model families", "pipelines", "jobs", "entry points"]
FAMILY_IMPORTS = {"edurank.reranker": {"edurank.retriever"}}
ENTRY_IMPORTS = {"edurank.cli": {"edurank.service"}}  # `edurank serve` starts the service; never the reverse
# what loading the LightGBM ranker may not pull in (it runs on machines with no torch wanted)
TORCH_FREE = ("edurank.reranker.lightgbm.model", "edurank.reranker.decision", "edurank.reranker.calibration")


def package_dirs() -> dict[str, Path]:
    """The installed package name of every mapped folder, from pyproject's [tool.setuptools.package-dir]."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in config.items()}


def modules() -> dict[str, Path]:
    """Every module of the package by its installed name."""
    found = {}
    for package, folder in package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
            found.setdefault(name, path)  # `edurank` maps to edurank/, which holds no mapped folder itself
    return found


def owner(module: str, table: dict[str, object]) -> str:
    """The longest key of `table` that is `module` or a package above it."""
    return max((p for p in table if module == p or module.startswith(p + ".")), key=len)


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int

    def problem(self) -> str | None:
        """Why this import breaks the layering, or None."""
        source, target = owner(self.source, LAYERS), owner(self.target, LAYERS)
        up, down = LAYERS[source], LAYERS[target]
        if down > up:
            return f"{LAYER_NAMES[up]} imports {LAYER_NAMES[down]}"
        if down == up and source != target and target not in FAMILY_IMPORTS.get(source, set()) | \
                ENTRY_IMPORTS.get(source, set()):
            return f"{source} imports {target}, a sibling it may not depend on"
        return None


def imports(name: str, path: Path) -> list[Import]:
    """The package imports of one module, wherever in it they are; bare folder names count as errors too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module]
        found += [Import(name, target, node.lineno) for target in targets]
    return found


ALL = modules()
FOLDERS = {folder.name for name, folder in package_dirs().items() if name != "edurank"}


def problems_of(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, why) for each import of module `name` (at `path`) that breaks the layering."""
    problems = []
    for found in imports(name, path):
        top = found.target.split(".")[0]
        if top in FOLDERS:
            problems.append((found.line, f"imports '{found.target}'; the package imports as edurank.*"))
        elif top == "edurank" and (why := found.problem()):
            problems.append((found.line, f"{found.source} -> {found.target} ({why})"))
    return problems


def test_every_mapped_module_is_found() -> None:
    assert {"edurank.artifacts", "edurank.retriever.model", "edurank.pipelines.recommend", "edurank.cli.main",
            "edurank.service.app", "edurank.training.loop", "edurank.reranker.lightgbm.model"} <= set(ALL)


def test_layers_import_one_way() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {why}" for name, path in sorted(ALL.items())
             for line, why in problems_of(name, path)]
    assert found == []


@pytest.mark.parametrize(("source", "line", "says"), [
    ("edurank.retriever.model", "from edurank.pipelines.recommend import Recommender", "families imports pipelines"),
    ("edurank.artifacts", "import edurank.service.app", "ground imports entry points"),
    ("edurank.essays.scorer", "from edurank.classifier.data import load_responses", "a sibling it may not depend on"),
    ("edurank.retriever.hybrid", "from edurank.reranker.decision import DecisionRule", "a sibling"),
    ("edurank.service.app", "from edurank.cli.main import main", "a sibling"),
    ("edurank.training.loop", "    from retriever.catalog import load_catalog", "imports 'retriever.catalog'"),
])
def test_a_reversed_import_is_caught(tmp_path: Path, source: str, line: str, says: str) -> None:
    """Upward, sideways and bare-folder imports all fail the check, one inside a function too."""
    path = tmp_path / "module.py"
    body = f"def later():\n{line}\n" if line.startswith(" ") else f"{line}\n"
    path.write_text(f"from __future__ import annotations\n\n{body}")
    [(_, why)] = problems_of(source, path)
    assert says in why


def test_the_lightgbm_ranker_loads_without_torch() -> None:
    """Importing the LightGBM second stage (with its calibration and rule) must not import torch."""
    code = "; ".join(f"import {m}" for m in TORCH_FREE) + \
        "; import sys; print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"
