from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from edurank.cli.main import build_parser, main
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


@pytest.mark.parametrize(("variable", "value"), [("EDURANK_API_KEY", "short"), ("EDURANK_MAX_TOP_K", "many")])
def test_serve_refuses_a_bad_setting_in_one_line(variable: str, value: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"edurank: error: {variable}: ") and error.count("\n") == 1 and value not in error


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
    manifest["base_model"]["fingerprint"] = "0" * 64
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


def test_reranker_training_refuses_retrievers_that_saw_every_topic(tiny_catalog: Path, tmp_path: Path,
                                                                   capsys) -> None:
    from edurank.artifacts import Manifest, write_manifest
    from edurank.retriever.catalog import load_catalog

    seen_all = tmp_path / "retriever"
    seen_all.mkdir()
    write_manifest(seen_all, Manifest(kind="retriever", version="v1", weights="w" * 64, base_model=None,
                                      params={"fold": None, "folds": 2, "seed": 42},
                                      data={"hash": load_catalog(tiny_catalog).data_hash, "files": []}).to_dict())
    code = main(["train", "reranker", "--catalog", str(tiny_catalog), "--retriever", str(seen_all),
                 "--out", str(tmp_path / "reranker"), "--folds", "2"])
    assert code == 2
    assert "every given retriever trained on these topics" in capsys.readouterr().err
    assert not list((tmp_path / "reranker").glob("2*"))


def test_evaluate_recommend_writes_report_and_curve(tiny_catalog: Path, tmp_path: Path, capsys) -> None:
    from edurank.reranker.cross_encoder.model import PairFormat, Reranker

    Reranker.load(None, PairFormat(16, 32)).save(tmp_path / "reranker")
    out = tmp_path / "report"
    assert main(["evaluate", "recommend", "--catalog", str(tiny_catalog), "--reranker", str(tmp_path / "reranker"),
                 "--candidates", "4", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["topics"] == 4 and report["candidates"] == 4 and "mean_f2" in report
    assert (out / "f2_threshold.png").is_file()


def test_ranker_commands_train_evaluate_and_refuse_bad_input(sample_catalog: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ranker"
    assert main(["train", "ranker", "--catalog", str(sample_catalog), "--retriever", "bundled", "--out", str(out),
                 "--folds", "3", "--fold", "0", "--trees", "60", "--dense-candidates", "16"]) == 0
    capsys.readouterr()
    report = tmp_path / "report"
    assert main(["evaluate", "recommend", "--catalog", str(sample_catalog), "--ranker", str(out), "--folds", "3",
                 "--fold", "0", "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    assert '"stage2_ms_per_topic"' in printed and (report / "report.json").is_file()
    assert main(["train", "ranker", "--catalog", str(sample_catalog), "--retriever", "bundled", "--out", str(out),
                 "--groups", "dense,tea-leaves"]) == 2
    assert "--groups: unknown ['tea-leaves']" in capsys.readouterr().err
    assert main(["train", "ranker", "--catalog", str(sample_catalog), "--retriever", "bundled", "--out", str(out),
                 "--feedback", str(tmp_path / "no-such.sqlite")]) == 2
    assert "--feedback" in capsys.readouterr().err
    assert main(["evaluate", "recommend", "--catalog", str(sample_catalog), "--out", str(report)]) == 2


def test_essay_commands_train_evaluate_and_refuse_bad_input(tmp_path: Path, capsys) -> None:
    from tests.conftest import essay_rows, write_essays

    data = write_essays(tmp_path / "essays.csv", essay_rows(24))
    out = tmp_path / "essays"
    train = ["train", "essays", "--data", str(data), "--out", str(out), "--paths", "fast", "--folds", "2",
             "--max-tokens", "32", "--stride", "24"]
    assert main(train) == 0
    assert main(["evaluate", "essays", "--model", str(out), "--data", str(data), "--oof",
                 "--out", str(tmp_path / "report")]) == 0
    assert '"predictions": "out-of-fold"' in capsys.readouterr().out
    assert (tmp_path / "report" / "report.json").is_file() and (tmp_path / "report" / "scores.png").is_file()

    rows = essay_rows(24)
    rows[4]["vocabulary"] = 7.0
    bad = write_essays(tmp_path / "bad.csv", rows)
    assert main(["train", "essays", "--data", str(bad), "--out", str(out)]) == 2
    assert "bad.csv, row 5, column 'vocabulary': '7.0' is not a score" in capsys.readouterr().err
    assert main(train[:-4] + ["--max-tokens", "32", "--stride", "31"]) == 2
    assert "stride" in capsys.readouterr().err
    assert main(["evaluate", "essays", "--model", str(tmp_path / "report"), "--data", str(data)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_classifier_commands_train_evaluate_and_refuse_bad_input(tmp_path: Path, capsys) -> None:
    from tests.conftest import response_rows, write_responses

    data = write_responses(tmp_path / "responses.csv", response_rows(32, noise=0.1))
    out = tmp_path / "classifier"
    train = ["train", "classifier", "--data", str(data), "--out", str(out), "--folds", "2", "--epochs", "1",
             "--max-length", "48", "--freeze-layers", "5"]
    assert main(train) == 0
    for extra in (["--oof"], []):
        report = tmp_path / f"report{len(extra)}"
        assert main(["evaluate", "classifier", "--model", str(out), "--data", str(data), "--out", str(report),
                     *extra]) == 0
        assert '"map3"' in capsys.readouterr().out
        assert {p.name for p in report.iterdir()} == {"report.json", "confusion.png", "label_issues.csv"}

    rows = response_rows(32)
    rows[3]["Category"] = "Maybe_Correct"
    bad = write_responses(tmp_path / "bad.csv", rows)
    assert main(["train", "classifier", "--data", str(bad), "--out", str(out)]) == 2
    assert "bad.csv, row 4, column 'Category': 'Maybe_Correct'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse's convention: exit 2, one line naming the flag
        main([*train, "--seeds", "1,x"])
    assert usage.value.code == 2
    assert "argument --seeds: give comma-separated int values, got '1,x'" in capsys.readouterr().err
    assert main(["evaluate", "classifier", "--model", str(tmp_path / "report0"), "--data", str(data)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


@pytest.mark.parametrize("fold", [0, 3, None])
def test_train_recommend_trains_the_retrievers_train_retriever_does_with_the_readme_flags(fold: int | None) -> None:
    """The job's retriever steps are `train retriever [--fold I] --rounds 0 --freeze-layers 2 --lr 1e-4` (every
    other option at its default): the same run hash, so folds trained by hand are found finished."""
    from dataclasses import asdict

    from edurank.options import from_args
    from edurank.training.config import RecommendConfig, RetrieverConfig

    parser, files = build_parser(), ["--catalog", "c", "--out", "o"]
    by_hand = ["train", "retriever", *files, "--rounds", "0", "--freeze-layers", "2", "--lr", "1e-4"]
    by_hand += ["--fold", str(fold)] if fold is not None else []
    recommend = from_args(RecommendConfig, parser.parse_args(["train", "recommend", *files]))
    assert asdict(recommend.retriever(fold)) == asdict(from_args(RetrieverConfig, parser.parse_args(by_hand)))


HEAVY = ("torch", "sentence_transformers", "transformers", "onnxruntime", "faiss", "lightgbm", "sklearn", "polars",
         "fastapi")


def test_building_the_parser_imports_nothing_heavy() -> None:
    """`edurank --help` answers at once: the parser comes from light config modules, the handlers import the
    libraries when a command runs. A fresh interpreter, so nothing a test imported earlier counts."""
    import subprocess
    import sys

    code = ("import sys; from edurank.cli.main import build_parser; build_parser(); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"building the parser imported {done.stdout.strip()}"


def every_parser(parser: argparse.ArgumentParser, path: str = "edurank") -> list[tuple[str, argparse.ArgumentParser]]:
    """The parser and every (sub)command's parser below it, with its command line."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += every_parser(child, f"{path} {name}")
    return found


def test_every_option_of_every_command_has_help() -> None:
    parsers = every_parser(build_parser())
    assert {"edurank train ranker", "edurank evaluate recommend", "edurank search", "edurank serve"} <= \
        {path for path, _ in parsers}
    missing = [f"{path} {action.option_strings or action.dest}" for path, parser in parsers
               for action in parser._actions if not (action.help or "").strip()]
    assert missing == []


def test_version(capsys: pytest.CaptureFixture) -> None:
    from edurank import __version__

    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"edurank {__version__}"
