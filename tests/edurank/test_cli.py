from __future__ import annotations

import json
from pathlib import Path

import pytest

from edurank.cli import main
from tests.conftest import TOPICS, topic, write_catalog


def test_bad_catalog_exits_2_with_file_row_and_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    catalog = write_catalog(tmp_path / "bad", topics=[*TOPICS, topic("x", "X", "missing")])
    code = main(["index", "--catalog", str(catalog), "--out", str(tmp_path / "index")])
    assert code == 2
    assert "topics.csv, row 10, column 'parent': parent 'missing'" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["index", "--catalog", "x", "--out", "y", "--index-type", "lsh"])
    assert caught.value.code == 2
    assert "invalid choice: 'lsh'" in capsys.readouterr().err


def test_index_search_and_evaluate_commands(tiny_catalog: Path, tmp_path: Path, capsys) -> None:
    assert main(["index", "--catalog", str(tiny_catalog), "--out", str(tmp_path / "index")]) == 0
    assert main(["search", "--index", str(tmp_path / "index"), "--language", "es", "-k", "2", "célula"]) == 0
    assert "c6" in capsys.readouterr().out
    out = tmp_path / "report"
    assert main(["evaluate", "retrieval", "--catalog", str(tiny_catalog), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["topics"] == 4 and (out / "recall_at_k.png").is_file()


def test_an_index_of_another_model_is_refused(tiny_catalog: Path, tmp_path: Path, capsys) -> None:
    from edurank.artifacts import read_manifest, resolve, write_manifest

    assert main(["index", "--catalog", str(tiny_catalog), "--out", str(tmp_path / "index")]) == 0
    version = resolve(tmp_path / "index")
    manifest = read_manifest(version)
    manifest["model"]["fingerprint"] = "0" * 64
    write_manifest(version, manifest)
    assert main(["search", "--index", str(tmp_path / "index"), "fractions"]) == 2
    assert "rebuild it with `edurank index`" in capsys.readouterr().err


def test_demo_builds_once_then_reuses_the_index(tiny_catalog: Path, tmp_path: Path, capsys) -> None:
    args = ["demo", "--catalog", str(tiny_catalog), "--out", str(tmp_path / "index"), "-k", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "built index" in first and "> topic fr_add: Mathematics > Fractions > Adding fractions" in first
    assert main(args) == 0
    assert "using index" in capsys.readouterr().out
