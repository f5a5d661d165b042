"""`edurank quickstart` on a small folder laid out like ../shared/data: it trains every job's fast path,
and the service it configures answers every endpoint with every model loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edurank import SAMPLE_CATALOG
from edurank.artifacts import MANIFEST
from edurank.cli.main import main
from edurank.service.app import create_app
from edurank.service.settings import Settings
from edurank.training.config import QuickstartConfig, RecommendConfig
from edurank.training.quickstart import plan, serving_settings
from tests.conftest import essay_rows, response_rows, write_essays, write_responses


def test_quickstart_trains_every_job_and_the_service_answers_all_of_them(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    data, out = tmp_path / "data", tmp_path / "artifacts"
    shutil.copytree(SAMPLE_CATALOG, data / "curriculum")
    write_essays((data / "fb3").mkdir(parents=True) or data / "fb3" / "train.csv", essay_rows(30))
    write_responses((data / "map").mkdir() or data / "map" / "train.csv", response_rows(40))
    assert main(["quickstart", "--data", str(data), "--out", str(out), "--essays", "24", "--no-serve"]) == 0
    assert "quickstart trained everything" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"index", "ranker", "essays", "classifier"}

    with TestClient(create_app(Settings(**serving_settings(data, out), background_load=False))) as client:
        registry = client.get("/ready").json()["registry"]
        assert registry["ranker"] and registry["essays"] and registry["classifier"] and not registry["problems"]
        for body in ({"topic_id": "t_en_003"}, {"topic": {"title": "Adding fractions"}}):
            recommended = client.post("/recommend", json=body).json()
            assert recommended["items"] and recommended["reranked"] and recommended["versions"]["ranker"]
        assert client.post("/score-essay", json={"text": "Students learn best at their own pace."}).status_code == 200
        classified = client.post("/classify", json={"question_text": "What is 1/2 + 1/4?", "answer": "3/4",
                                                    "explanation": "two quarters and one quarter"})
        assert classified.status_code == 200 and len(classified.json()["results"][0]["labels"]) == 3


def test_quickstart_without_a_catalog_exits_2_saying_what_it_needs(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    assert main(["quickstart", "--data", str(tmp_path), "--no-serve"]) == 2
    assert "no curriculum/ folder" in capsys.readouterr().err


def test_quickstart_full_trains_the_recommend_job_in_place_of_the_index_and_ranker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--full: `train recommend` on DIR/curriculum replaces the index and ranker steps and publishes into the
    same root the service reads, estimated by its steps still to train; the other steps stay as they were."""
    import edurank.training.recommend as recommend

    data, out = tmp_path / "data", tmp_path / "artifacts"
    shutil.copytree(SAMPLE_CATALOG, data / "curriculum")
    write_essays((data / "fb3").mkdir(parents=True) or data / "fb3" / "train.csv", essay_rows(8))
    calls = []
    monkeypatch.setattr(recommend, "train_recommend",
                        lambda catalog, root, config: calls.append((catalog, root, config)) or root / "summary")
    assert [step.name for step in plan(data, out, QuickstartConfig(), tmp_path)] == ["index", "ranker", "essays"]
    steps = plan(data, out, QuickstartConfig(full=True), tmp_path)
    assert [step.name for step in steps] == ["recommend", "essays"] and steps[0].units > 60
    assert steps[0].run() == out / "summary"
    [(catalog, root, config)] = calls
    assert root == out and {p.parent for p in catalog.files} == {data / "curriculum"}
    assert config == RecommendConfig(folds=5)
    monkeypatch.setattr(recommend.RecommendJob, "pending", lambda job: [])  # a resumed run with nothing left
    assert plan(data, out, QuickstartConfig(full=True), tmp_path)[0].units == 0


def test_a_plain_quickstart_into_a_root_where_full_ran_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Its bundled-encoder index beside --full's fine-tuned retriever would be refused by the service (every
    catalog route a 503): refused before anything trains."""
    data, out = tmp_path / "data", tmp_path / "artifacts"
    shutil.copytree(SAMPLE_CATALOG, data / "curriculum")
    (out / "retriever" / "v1").mkdir(parents=True)
    (out / "retriever" / "v1" / MANIFEST).write_text("{}")
    assert main(["quickstart", "--data", str(data), "--out", str(out), "--no-serve"]) == 2
    printed = capsys.readouterr().err
    assert "rerun with --full or give another --out" in printed and printed.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["retriever"]
