"""`edurank export` of a cross-encoder: the pair scorer as one ONNX graph, ranked like torch, served as a reranker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edurank.artifacts import LATEST, Manifest, ModelRef, publish_artifact, staging_dir
from edurank.backends.config import ExportConfig
from edurank.cli.main import main
from edurank.errors import InputError
from edurank.reranker.cross_encoder.export import check_lists, export_reranker
from edurank.reranker.cross_encoder.model import PairFormat, Reranker
from edurank.reranker.decision import DecisionRule
from edurank.retriever.catalog import load_catalog


def publish_reranker(root: Path, isolated_layers: int = 0) -> Path:
    """A fresh cross-encoder on the bundled MiniLM, published as a `reranker` artifact with a tuned rule."""
    reranker = Reranker.load(None, PairFormat(16, 32))
    reranker.model.isolated_layers = isolated_layers
    reranker.rule = DecisionRule(threshold=0.0, max_items=3, tuned=True)
    with staging_dir(root, "run") as work:
        reranker.save(work)
        return publish_artifact(work, root, f"{isolated_layers}" * 64, kind=Reranker.KIND,
                                base_model=ModelRef("bundled", reranker.fingerprint), data={},
                                params={"isolated_layers": isolated_layers})


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return publish_reranker(tmp_path_factory.mktemp("reranker"))


@pytest.fixture(scope="module")
def int8_export(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exports")
    assert main(["export", "--model", str(source), "--out", str(root), "--check-items", "64"]) == 0
    return root / (root / LATEST).read_text().strip()


def test_the_export_is_a_reranker_that_names_its_source_and_ranks_like_torch(int8_export: Path,
                                                                              source: Path) -> None:
    manifest, torch_model = Manifest.read(int8_export), Reranker.load(source)
    assert manifest.kind == Reranker.KIND and manifest.params["backend"] == "onnx-int8"
    assert manifest.base_model is not None and manifest.base_model.fingerprint == torch_model.fingerprint
    assert manifest.metrics["pairs"] == 64 and manifest.metrics["spearman_mean"] >= 0.95
    exported = Reranker.load(int8_export)
    assert exported.backend == "onnx-int8" and exported.source_fingerprint == torch_model.fingerprint
    # the pair format, calibration and rule travel with the graph
    assert exported.format == torch_model.format and exported.rule == torch_model.rule
    with pytest.raises(InputError, match="cannot be trained"):
        exported.model  # noqa: B018 - the property is what refuses


@pytest.mark.parametrize("isolated_layers", [0, 3])
def test_an_fp32_export_reproduces_torch_logits(isolated_layers: int, sample_catalog: Path, tmp_path: Path) -> None:
    """Late interaction (the lower layers within each text) exports as faithfully as full cross-attention."""
    source = publish_reranker(tmp_path / "reranker", isolated_layers)
    path = export_reranker(source, load_catalog(sample_catalog), tmp_path / "exports",
                           ExportConfig(backend="onnx", check_items=32))
    items = [item for candidates in check_lists(load_catalog(sample_catalog), 32) for item in candidates]
    torch_logits, onnx_logits = Reranker.load(source).scores(items), Reranker.load(path).scores(items)
    assert np.abs(torch_logits - onnx_logits).max() < 1e-3


def test_a_rank_agreement_below_the_bar_publishes_nothing(source: Path, sample_catalog: Path,
                                                          tmp_path: Path) -> None:
    with pytest.raises(InputError, match="below --min-rank-agreement"):
        export_reranker(source, load_catalog(sample_catalog), tmp_path, ExportConfig(check_items=32,
                                                                                    min_rank_agreement=1.01))
    assert not list(tmp_path.iterdir())  # no version, no LATEST, no staging left
