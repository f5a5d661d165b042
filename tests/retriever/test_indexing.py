from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edurank.artifacts import LATEST, Manifest
from retriever import indexing
from retriever.catalog import load_catalog
from retriever.indexing import IndexConfig, build_index, load_index, search_text
from retriever.model import BiEncoder


def test_index_job_publishes_a_versioned_directory(sample_catalog: Path, bundled_encoder, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    path = build_index(bundled_encoder, catalog, tmp_path / "index", progress=False)
    manifest = Manifest.read(path)
    assert manifest.kind == "index" and manifest.weights
    assert manifest.details["count"] == catalog.content.height == len(load_index(path, bundled_encoder).ids)
    assert manifest.details["dimension"] == 384 and manifest.params["index_type"] == "flat"
    assert manifest.base_model is not None and manifest.base_model.fingerprint == bundled_encoder.fingerprint
    assert manifest.data["hash"] == catalog.data_hash
    assert (tmp_path / "index" / LATEST).read_text().strip() == path.name
    assert [p.name for p in (tmp_path / "index").iterdir() if p.name.startswith(".")] == []


def test_search_returns_the_matching_language_and_kind(sample_catalog: Path, bundled_encoder, tmp_path: Path) -> None:
    path = build_index(bundled_encoder, load_catalog(sample_catalog), tmp_path / "index", progress=False)
    index = load_index(path, bundled_encoder)
    frame = search_text(index, bundled_encoder, ["fracciones"], k=5, languages=["es"], kinds=["video"])[0]
    assert frame.height > 0
    assert set(frame["language"]) == {"es"} and set(frame["kind"]) == {"video"}
    english = search_text(index, bundled_encoder, ["adding fractions with unlike denominators"], k=3)[0]
    assert "fraction" in english["title"][0].lower()


def test_a_failed_job_leaves_the_previous_version_in_place(tiny_catalog: Path, bundled_encoder, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog(tiny_catalog)
    first = build_index(bundled_encoder, catalog, tmp_path / "index", progress=False)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(indexing, "build_faiss", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_index(bundled_encoder, catalog, tmp_path / "index", IndexConfig(index_type="hnsw"), progress=False)
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == sorted([first.name, LATEST])
    assert Manifest.read(first) == load_index(tmp_path / "index", bundled_encoder).manifest


def test_the_index_job_stores_a_companions_vectors_and_names_it(tiny_catalog: Path, bundled_encoder,
                                                                 tmp_path: Path) -> None:
    catalog = load_catalog(tiny_catalog)
    path = build_index(bundled_encoder, catalog, tmp_path / "index", IndexConfig(companion="bundled"), progress=False)
    index = load_index(path, bundled_encoder)
    assert index.companion is not None and index.companion.model.path == "bundled"  # valid on any install
    assert index.companion.model.fingerprint == bundled_encoder.fingerprint
    expected = BiEncoder.load("bundled").encode_content(catalog)  # the companion's own settings (128 tokens)
    assert np.allclose(index.companion.vectors, expected, atol=1e-5)
    assert load_index(build_index(bundled_encoder, catalog, tmp_path / "plain", progress=False),
                      bundled_encoder).companion is None
