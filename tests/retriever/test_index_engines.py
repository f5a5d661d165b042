"""The indexing job on Ray gives what the local job gives: the same ids, vectors (to float tolerance),
layout and version hash, with where it ran recorded apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.artifacts import Manifest
from edurank.cli.main import main
from edurank.retriever.content_index import IDS_FILE, ContentIndex

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'edurank[ray]'")


def test_ray_and_local_engines_publish_the_same_index(tiny_catalog: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    assert main(["index", "--catalog", str(tiny_catalog), "--out", str(local), "--batch-size", "2"]) == 0
    assert main(["index", "--catalog", str(tiny_catalog), "--out", str(tmp_path / "ray"), "--engine", "ray",
                 "--ray-actors", "2", "--batch-size", "2"]) == 0
    built = {name: next(p for p in (tmp_path / name).iterdir() if p.is_dir() and not p.name.startswith("."))
             for name in ("local", "ray")}
    assert sorted(p.name for p in built["local"].rglob("*")) == sorted(p.name for p in built["ray"].rglob("*"))
    assert pl.read_parquet(built["local"] / IDS_FILE).equals(pl.read_parquet(built["ray"] / IDS_FILE))
    indexes = {name: ContentIndex.load(path) for name, path in built.items()}
    rows = np.arange(len(indexes["local"].items))
    np.testing.assert_allclose(indexes["local"].vectors_of(rows), indexes["ray"].vectors_of(rows), atol=1e-5)
    manifests = {name: Manifest.read(path) for name, path in built.items()}
    assert manifests["local"].params == manifests["ray"].params
    assert manifests["local"].version.split("-")[-1] == manifests["ray"].version.split("-")[-1]  # same run hash
    assert manifests["ray"].details["ran_on"] == {"engine": "ray", "ray_address": None, "ray_actors": 2,
                                                  "incremental": False}
