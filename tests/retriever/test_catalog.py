from __future__ import annotations

from pathlib import Path

import pytest

from edurank.errors import CatalogError, InputError
from edurank.retriever.catalog import load_catalog
from tests.conftest import CONTENT, CORRELATIONS, TOPICS, item, topic, write_catalog


def test_reads_topics_content_and_pairs(tiny_catalog: Path) -> None:
    catalog = load_catalog(tiny_catalog)
    assert catalog.topics.height == len(TOPICS) and catalog.content.height == len(CONTENT)
    assert catalog.gold == {"fr_add": {"c1", "c2"}, "fr_mul": {"c3"}, "geo_area": {"c4", "c5"}, "es_cell": {"c6"}}
    assert catalog.content.filter(catalog.content["id"] == "c6")["language"].item() == "es"


def test_breadcrumbs_list_ancestors_root_first(tiny_catalog: Path) -> None:
    crumbs = dict(load_catalog(tiny_catalog).topics.select("id", "breadcrumbs").iter_rows())
    assert crumbs["fr_add"] == "Mathematics > Fractions"
    assert crumbs["es_cell"] == "Biología"
    assert crumbs["root"] == ""


def test_multiline_latex_fields_survive_csv(tiny_catalog: Path) -> None:
    text = load_catalog(tiny_catalog).content.filter(pl_id("c1"))["text"].item()
    assert "\\frac{1}{2}" in text and "\n" in text


def pl_id(value: str):
    import polars as pl

    return pl.col("id") == value


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path / "pq", suffix=".parquet"))
    assert catalog.gold == load_catalog(write_catalog(tmp_path / "csv")).gold


def test_data_hash_changes_with_the_files(tmp_path: Path) -> None:
    first = load_catalog(write_catalog(tmp_path / "a")).data_hash
    changed = load_catalog(write_catalog(tmp_path / "b", content=[*CONTENT, item("c9", "Extra", "x")])).data_hash
    assert first != changed


def test_evaluation_topics_may_come_from_other_files(tiny_catalog: Path, tmp_path: Path) -> None:
    (tmp_path / "eval.csv").write_text("topic_id,content_ids\nfr_mul,c3 c1\n")
    catalog = load_catalog(tiny_catalog, correlations=tmp_path / "eval.csv")
    assert catalog.gold == {"fr_mul": {"c3", "c1"}}


@pytest.mark.parametrize(("change", "expected"), [
    ({"topics": [{k: v for k, v in t.items() if k != "parent"} for t in TOPICS]},
     "topics.csv: missing column(s) parent"),
    ({"topics": [*TOPICS, topic("fr", "Again", "root")]}, "topics.csv, row 10, column 'id': duplicate id 'fr'"),
    ({"topics": [*TOPICS, topic("orphan", "Orphan", "nowhere")]},
     "topics.csv, row 10, column 'parent': parent 'nowhere' of topic 'orphan' is not a topic id"),
    ({"topics": [topic("a", "A", "b"), topic("b", "B", "a"), *TOPICS]},
     "topics.csv, row 2, column 'parent': topic 'a' is its own ancestor"),
    ({"content": [*CONTENT, item("c8", None)]}, "content.csv, row 9, column 'title': content item 'c8' has no text"),
    ({"content": [*CONTENT, item("c8", "Title", language=None)]}, "content.csv, row 9, column 'language': empty"),
    ({"correlations": [*CORRELATIONS, {"topic_id": "nope", "content_ids": "c1"}]},
     "correlations.csv, row 6, column 'topic_id': topic 'nope' is not in topics"),
    ({"correlations": [*CORRELATIONS, {"topic_id": "fr", "content_ids": "c1 c404"}]},
     "correlations.csv, row 6, column 'content_ids': content id(s) c404 not in content"),
])
def test_bad_catalogs_name_file_row_and_column(tmp_path: Path, change: dict, expected: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog(write_catalog(tmp_path / "bad", **change))
    assert expected in str(caught.value)


def test_undecodable_bytes_are_reported_with_their_line(tiny_catalog: Path) -> None:
    path = tiny_catalog / "content.csv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3] + b" caf\xe9"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CatalogError, match=r"content.csv: line 4: byte 0xe9 is not valid UTF-8"):
        load_catalog(tiny_catalog)


def test_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such directory"):
        load_catalog(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no topics.csv or topics.parquet"):
        load_catalog(tmp_path / "empty")
