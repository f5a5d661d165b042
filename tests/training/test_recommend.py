"""`edurank train recommend`: one job publishes a set the service serves as it is (the ranker included), a
killed run resumes without redoing finished folds, a rerun of a finished job trains nothing, a step whose
inputs changed trains again, and bad flags exit 2 in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edurank.artifacts import LATEST, MANIFEST, Manifest, versions
from edurank.cli.main import main
from edurank.retriever.catalog import load_catalog
from edurank.retriever.config import CandidateConfig
from edurank.service.app import create_app
from edurank.service.settings import Settings
from edurank.training.config import RecommendConfig
from edurank.training.recommend import FOLDS, RANKER, SUMMARY, RecommendJob, StepBar, finished
from tests.conftest import item, tail, topic, write_catalog

SUBJECTS = ["fractions", "decimals", "triangles", "circles", "volcanoes", "rivers", "magnets", "plants", "cells",
            "planets", "verbs", "poems", "maps", "coins"]
# the tiniest job: two folds, one epoch, short texts, every lower layer frozen, few candidates
TINY = ["--folds", "2", "--retriever-epochs", "1", "--retriever-max-tokens", "32", "--retriever-freeze-layers", "5",
        "--dense-candidates", "8", "--lexical-candidates", "4"]
STEPS = ["fold 0 retriever", "fold 1 retriever", "served retriever", "index", "ranker"]


def small_catalog(directory: Path) -> Path:
    """Fourteen linked topics, two items each, and a few items no topic links."""
    topics = [topic("root", "Lessons", level=0)] + [
        topic(f"t_{name}", f"Learning about {name}", "root", description=f"What pupils should know of {name}.",
              level=1) for name in SUBJECTS]
    content = [item(f"c_{name}_{i}", f"{name.title()} {kind}", f"A {kind} that explains {name} step by step.")
               for name in SUBJECTS for i, kind in enumerate(("lesson", "worksheet"))]
    content += [item(f"c_extra_{i}", f"Extra reading {i}", "Stories for a quiet afternoon.") for i in range(4)]
    links = [{"topic_id": f"t_{name}", "content_ids": f"c_{name}_0 c_{name}_1"} for name in SUBJECTS]
    return write_catalog(directory, topics, content, links)


def command(catalog: Path, out: Path) -> list[str]:
    return ["train", "recommend", "--catalog", str(catalog), "--out", str(out), *TINY]


def stamps(out: Path) -> dict[str, tuple[str, int]]:
    """Every published version under `out` with its manifest's mtime: what a rerun must leave alone."""
    return {str(path.relative_to(out)): (path.name, path.stat().st_mtime_ns)
            for path in out.rglob(MANIFEST) if not any(part.startswith(".") for part in path.parts)}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The job run in a subprocess, killed (SIGKILL) once fold 0's retriever is published, then rerun to the
    end; what fold 0 held when it was killed and the rerun's output."""
    root = tmp_path_factory.mktemp("recommend")
    catalog, out = small_catalog(root / "catalog"), root / "out"
    cli = [sys.executable, "-m", "edurank.cli", *command(catalog, out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = root / "killed.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(cli, stdout=sink, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while not (out / FOLDS / "0" / LATEST).is_file():
            assert process.poll() is None and time.monotonic() < deadline, tail(log)
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait()
    fold0 = versions(out / FOLDS / "0")
    before = {"version": fold0[0].name, "mtime": (fold0[0] / MANIFEST).stat().st_mtime_ns}
    rerun = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    return {"catalog": catalog, "out": out, "fold0": before, "output": rerun.stdout + rerun.stderr}


def test_a_killed_run_resumes_without_redoing_its_finished_fold(resumed: dict[str, Any]) -> None:
    out, fold0 = resumed["out"], resumed["fold0"]
    after = versions(out / FOLDS / "0")
    assert [p.name for p in after] == [fold0["version"]]  # not retrained, nothing published beside it
    assert (after[0] / MANIFEST).stat().st_mtime_ns == fold0["mtime"]
    assert f"fold 0 retriever: done (version {fold0['version']})" in resumed["output"]
    summary = json.loads((out / SUMMARY).read_text())
    assert list(summary["steps"]) == STEPS and summary["skipped"] == ["fold 0 retriever"]
    assert set(summary["ranker"]["held_out"]) == {"mean_f2"} and summary["ranker"]["retrieval_only"]
    manifest = Manifest.read(versions(out / RANKER)[0])
    folds = {versions(out / FOLDS / str(fold))[0] for fold in (0, 1)}
    assert {d.fingerprint for d in manifest.depends} == {Manifest.read(p).weights for p in folds}
    assert manifest.params["folds"] == 2


def test_the_service_serves_the_published_set_as_it_is(resumed: dict[str, Any]) -> None:
    out = resumed["out"]
    settings = Settings(artifacts=out, catalog=resumed["catalog"], build_index=False, train_ranker=False,
                        background_load=False)
    with TestClient(create_app(settings)) as client:
        registry = client.get("/ready").json()["registry"]
        assert registry["ranker"] and not registry["problems"]
        body = client.post("/recommend", json={"topic_id": "t_magnets"}).json()
        assert body["items"] and body["reranked"]
        assert body["versions"]["ranker"] == versions(out / RANKER)[0].name
        assert body["versions"]["retriever"] == versions(out / "retriever")[0].name
        assert body["versions"]["index"] == versions(out / "index")[0].name


def test_a_rerun_of_a_finished_job_trains_nothing(resumed: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    out = resumed["out"]
    before = stamps(out)
    assert main(command(resumed["catalog"], out)) == 0
    printed = capsys.readouterr()
    assert all(f"{step}: done (version " in printed.out + printed.err for step in STEPS)
    assert stamps(out) == before
    assert json.loads((out / SUMMARY).read_text())["skipped"] == STEPS


def test_a_step_whose_inputs_changed_is_not_finished(resumed: dict[str, Any]) -> None:
    catalog, out = load_catalog(resumed["catalog"]), resumed["out"]
    job = RecommendJob(catalog, out, RecommendConfig(folds=2, retriever_epochs=1, retriever_max_tokens=32,
                                                     retriever_freeze_layers=5,
                                                     candidates=CandidateConfig(dense=8, lexical=4)))
    job.published = {step: versions(out / FOLDS / str(fold))[0] for fold, step in enumerate(STEPS[:2])}
    assert finished(out / RANKER, job.ranker_expected()) == versions(out / RANKER)[0]
    job.published[STEPS[1]] = versions(out / "retriever")[0]  # another model in fold 1's place
    assert finished(out / RANKER, job.ranker_expected()) is None


@pytest.mark.parametrize(("flags", "error"), [
    (["--groups", "dense,cross"], "--groups cross: give the model whose scores it reads (--cross-encoder)"),
    (["--groups", "dense,tea-leaves"], "--groups: unknown ['tea-leaves']"),
])
def test_bad_flags_exit_2_in_one_line(flags: list[str], error: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "recommend", "--catalog", str(tmp_path), "--out", str(tmp_path / "out"), *flags]) == 2
    printed = capsys.readouterr().err
    assert error in printed and printed.count("\n") == 1 and not (tmp_path / "out").exists()


def test_a_split_flag_below_its_minimum_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["train", "recommend", "--catalog", str(tmp_path), "--out", str(tmp_path), "--folds", "1"])
    assert caught.value.code == 2 and "--folds: must be >= 2" in capsys.readouterr().err


def test_the_bar_rescales_its_estimate_by_the_steps_trained_not_by_those_found_finished() -> None:
    with StepBar("job", {"a": 10.0, "b": 10.0, "c": 20.0}) as bar:
        assert bar.remaining() == "~00:40"
        bar.done("a", None)  # found finished: done at once, and nothing learnt of the speed
        assert bar.remaining() == "~00:30" and bar.bar.n == 10
        bar.done("b", 20.0)  # twice its estimate
        assert bar.remaining() == "~00:40" and bar.bar.n == 20
