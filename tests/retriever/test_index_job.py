from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.artifacts import LATEST, Manifest
from edurank.retriever import index_job as indexing
from edurank.retriever.catalog import load_catalog
from edurank.retriever.config import IndexConfig
from edurank.retriever.content_index import ContentIndex
from edurank.retriever.index_job import build_index, load_index, search_text
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import content_texts


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
    expected = BiEncoder.load("bundled").encode_content(catalog)  # the companion at its own limit (256 tokens)
    assert np.allclose(index.companion.vectors, expected, atol=1e-5)
    assert load_index(build_index(bundled_encoder, catalog, tmp_path / "plain", progress=False),
                      bundled_encoder).companion is None


def test_an_incremental_run_embeds_only_what_changed(tiny_catalog: Path, bundled_encoder, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Add one item, change one text, delete one: only the first two are embedded, the rest is reused,
    the result equals a full rebuild, and the manifest and changes.parquet say what changed."""
    first = build_index(bundled_encoder, load_catalog(tiny_catalog), tmp_path / "index", progress=False)
    content = pl.read_csv(tiny_catalog / "content.csv")
    edited = content.filter(pl.col("id") != "c7").with_columns(
        pl.when(pl.col("id") == "c2").then(pl.lit("Least common multiples")).otherwise(pl.col("title")).alias("title"))
    new_row = content.head(1).with_columns(pl.lit("c8").alias("id"), pl.lit("Equivalent fractions").alias("title"))
    changed = tmp_path / "changed-catalog"
    shutil.copytree(tiny_catalog, changed)
    pl.concat([edited, new_row]).write_csv(changed / "content.csv")
    catalog = load_catalog(changed)

    embedded: list[str] = []
    original = bundled_encoder.encode
    monkeypatch.setattr(bundled_encoder, "encode", lambda texts, *a, **k: embedded.extend(texts) or original(texts))
    path = build_index(bundled_encoder, catalog, tmp_path / "index", IndexConfig(incremental=True), progress=False)
    items = set(content_texts(catalog, bundled_encoder.builder))  # (topic texts are embedded anew, and few)
    assert len([text for text in embedded if text in items]) == 2
    assert any("Least common multiples" in text for text in embedded)

    manifest = Manifest.read(path)
    assert manifest.details["changes"] == {"since": first.name, "added": 1, "updated": 1, "deleted": 1}
    changes = dict(pl.read_parquet(path / "changes.parquet").iter_rows())
    assert changes == {"c8": "added", "c2": "updated", "c7": "deleted"}
    monkeypatch.undo()
    full = load_index(build_index(bundled_encoder, catalog, tmp_path / "full", progress=False), bundled_encoder)
    incremental = load_index(path, bundled_encoder)
    assert incremental.ids == full.ids == catalog.content["id"].to_list()
    rows = np.arange(len(full.ids))
    assert np.allclose(incremental.vectors_of(rows), full.vectors_of(rows), atol=1e-5)


def test_an_incremental_run_without_a_usable_version_embeds_everything(tiny_catalog: Path, bundled_encoder,
                                                                       tmp_path: Path) -> None:
    path = build_index(bundled_encoder, load_catalog(tiny_catalog), tmp_path / "index", IndexConfig(incremental=True),
                       progress=False)
    assert "changes" not in Manifest.read(path).details and not (path / "changes.parquet").exists()


def test_two_jobs_on_one_output_folder_at_once_each_publish_their_version(tiny_catalog: Path, bundled_encoder,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Both jobs of the same run are inside their staging folders at the same moment (a barrier in the save
    holds the first until the second arrives): each writes its own, both versions publish and load."""
    catalog = load_catalog(tiny_catalog)
    vectors = bundled_encoder.encode_content(catalog)
    out, barrier, staged = tmp_path / "index", threading.Barrier(2, timeout=60), []
    save = ContentIndex.save

    def save_together(index: ContentIndex, work: Path) -> None:
        staged.append(work)
        barrier.wait()
        save(index, work)

    monkeypatch.setattr(ContentIndex, "save", save_together)
    with ThreadPoolExecutor(max_workers=2) as pool:
        published = list(pool.map(lambda _: indexing.publish_index(vectors, bundled_encoder, catalog, out), range(2)))
    assert len(set(staged)) == 2 and len(set(published)) == 2
    assert all(load_index(path, bundled_encoder).ids == catalog.content["id"].to_list() for path in published)
    assert (out / LATEST).read_text().strip() == max(path.name for path in published)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
