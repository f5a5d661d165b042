"""`edurank export`: ONNX Runtime retrievers that load wherever a retriever does, checked against torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edurank.artifacts import LATEST, Manifest, ModelRef, publish_artifact, staging_dir
from edurank.backends.config import ExportConfig
from edurank.cli.main import main
from edurank.errors import InputError
from edurank.retriever.catalog import load_catalog
from edurank.retriever.export import export_retriever
from edurank.retriever.index_job import build_index, load_index, search_text
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import content_texts
from edurank.retriever.topic_folds import seen_topics
from tests.conftest import write_catalog


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exports")
    assert main(["export", "--out", str(root), "--check-items", "64"]) == 0
    return root / (root / LATEST).read_text().strip()


def test_the_export_names_its_source_and_its_agreement_with_torch(int8_export: Path, bundled_encoder) -> None:
    manifest = Manifest.read(int8_export)
    assert manifest.kind == BiEncoder.KIND and manifest.params["backend"] == "onnx-int8"
    assert manifest.base_model is not None and manifest.base_model.path == "bundled"
    assert manifest.base_model.fingerprint == bundled_encoder.fingerprint
    assert manifest.metrics["texts"] == 64 and manifest.metrics["cosine_mean"] >= 0.99
    assert sorted(p.name for p in int8_export.iterdir() if p.suffix == ".onnx") == ["model.onnx"]


def test_an_int8_export_indexes_and_searches_like_the_torch_model(int8_export: Path, sample_catalog: Path,
                                                                  tmp_path: Path) -> None:
    exported, source = BiEncoder.load(int8_export), BiEncoder.load(None)
    assert exported.backend == "onnx-int8" and exported.fingerprint != source.fingerprint
    catalog = load_catalog(sample_catalog)
    texts = content_texts(catalog, source.builder)
    cosine = np.einsum("ij,ij->i", exported.encode(texts), source.encode(texts))
    assert cosine.min() > 0.97 and cosine.mean() > 0.99
    index = load_index(build_index(exported, catalog, tmp_path / "index", progress=False), exported)
    query = "Adding fractions with different denominators"
    by_onnx = search_text(index, exported, [query], 3)[0]["id"].to_list()
    by_torch = search_text(load_index(build_index(source, catalog, tmp_path / "torch", progress=False), source),
                           source, [query], 3)[0]["id"].to_list()
    assert by_onnx[0] in by_torch and len(set(by_onnx) & set(by_torch)) >= 2  # near-ties may swap places


def test_an_export_saw_the_topics_its_source_trained_on(int8_export: Path, tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path / "catalog"))
    assert seen_topics(int8_export, catalog) == set()  # the bundled model never trained on a catalog
    source = BiEncoder.load(None)
    with staging_dir(tmp_path / "fold0", "run") as work:  # a "fold model": fold 0 of 2 held out
        source.save(work)
        fold_model = publish_artifact(work, tmp_path / "fold0", "f" * 64, kind=BiEncoder.KIND,
                                      base_model=ModelRef("bundled", source.fingerprint),
                                      data={"hash": catalog.data_hash, "files": []},
                                      params={"fold": 0, "folds": 2, "seed": 42, "max_tokens": 64})
    export = export_retriever(fold_model, catalog, tmp_path / "exports", ExportConfig(check_items=8, min_cosine=0.9))
    assert seen_topics(export, catalog) == seen_topics(fold_model, catalog)
    assert 0 < len(seen_topics(export, catalog)) < len(catalog.gold)
    assert BiEncoder.load(export).max_tokens == 64


def test_an_export_cannot_be_trained_or_exported_again(int8_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="cannot be trained"):
        BiEncoder.load(int8_export).model  # noqa: B018 - the property is what refuses
    assert main(["export", "--model", str(int8_export), "--out", str(int8_export.parent)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("edurank: error: --model") and "already an onnx-int8 export" in error
    assert len(error.splitlines()) == 1


def test_an_export_below_the_agreement_bar_publishes_nothing(int8_export: Path, sample_catalog: Path) -> None:
    root = int8_export.parent
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(InputError, match="below --min-cosine"):
        export_retriever(None, load_catalog(sample_catalog), root, ExportConfig(check_items=16, min_cosine=0.99999))
    assert sorted(p.name for p in root.iterdir()) == before  # LATEST unchanged, no staging left


def test_an_fp32_export_reproduces_torch(sample_catalog: Path, tmp_path: Path) -> None:
    path = export_retriever(None, load_catalog(sample_catalog), tmp_path, ExportConfig(backend="onnx", check_items=32))
    assert Manifest.read(path).metrics["cosine_min"] >= 0.9999
    exported, source = BiEncoder.load(path), BiEncoder.load(None)
    texts = ["Equivalent fractions", "La fotosíntesis de las plantas", "x " * 300]  # the last one is truncated
    assert np.abs(exported.encode(texts) - source.encode(texts)).max() < 1e-4
