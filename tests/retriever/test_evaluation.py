from __future__ import annotations

import json
from pathlib import Path

import pytest

from edurank.retriever.catalog import load_catalog
from edurank.retriever.evaluation import (
    average_precision_at_k,
    evaluate_retrieval,
    mean_average_precision,
    recall_at_k,
    write_report,
)


def test_recall_micro_and_per_topic_by_hand() -> None:
    ranked = [["a", "x", "b"], ["y", "c"]]
    gold = [{"a", "b", "z"}, {"c"}]
    result = recall_at_k(ranked, gold, [1, 3])
    assert result["recall@1"] == pytest.approx(1 / 4)
    assert result["mean_recall@1"] == pytest.approx((1 / 3 + 0) / 2)
    assert result["recall@3"] == pytest.approx(3 / 4)
    assert result["mean_recall@3"] == pytest.approx((2 / 3 + 1) / 2)


def test_map_at_k_by_hand() -> None:
    assert average_precision_at_k(["x", "g"], {"g"}, 25) == pytest.approx(0.5)
    assert average_precision_at_k(["g", "x", "h"], {"g", "h"}, 25) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_k(["x", "g"], {"g"}, 1) == 0.0
    assert mean_average_precision([["g"], ["x", "x", "g"]], [{"g"}, {"g"}], 25) == pytest.approx((1 + 1 / 3) / 2)


def test_evaluate_retrieval_writes_json_and_png(tiny_catalog: Path, bundled_encoder, tmp_path: Path) -> None:
    report = evaluate_retrieval(bundled_encoder, load_catalog(tiny_catalog), ks=(1, 5, 10))
    assert report["topics"] == 4 and report["gold_pairs"] == 6
    assert report["recall@10"] == 1.0  # the catalog has 7 items: everything is in the top 10
    assert 0 < report["recall@1"] <= report["recall@5"]
    json_path, png_path = write_report(report, tmp_path / "report", ks=(1, 5, 10))
    assert json.loads(json_path.read_text())["topics"] == 4
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_map_is_reported_for_one_gold_catalogs(tiny_catalog: Path, bundled_encoder, tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("topic_id,content_ids\nfr_mul,c3\ngeo_area,c4\n")
    catalog = load_catalog(tiny_catalog, correlations=tmp_path / "one.csv")
    report = evaluate_retrieval(bundled_encoder, catalog, ks=(1, 5))
    assert 0 < report["map@25"] <= 1
