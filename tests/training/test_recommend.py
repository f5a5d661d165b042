"""`edurank train recommend`: one job publishes a set the service serves as it is (the ranker included), a
killed run resumes without redoing finished folds (the interrupted one from its staging folder), a rerun of a
finished job trains nothing, a step whose inputs changed or whose files are damaged trains again, a companion
that saw the topics is refused at once, and the bar counts down within a step."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edurank.artifacts import MANIFEST, Manifest, versions
from edurank.cli.main import main
from edurank.retriever.catalog import load_catalog
from edurank.retriever.config import CandidateConfig
from edurank.service.app import create_app
from edurank.service.settings import Settings
from edurank.training.config import RecommendConfig
from edurank.training.recommend import FOLDS, INDEX, RANKER, SERVED, SUMMARY, RecommendJob, StepBar, finished
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


def staged(fold: Path) -> list[Path]:
    return sorted(fold.glob(".retriever-*.tmp"))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The job run in a subprocess, killed (SIGKILL) once fold 0's retriever is published and fold 1's has
    begun staging, then rerun to the end; what fold 0 and fold 1 held when it was killed and the rerun's output."""
    root = tmp_path_factory.mktemp("recommend")
    catalog, out = small_catalog(root / "catalog"), root / "out"
    cli = [sys.executable, "-m", "edurank.cli", *command(catalog, out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = root / "killed.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(cli, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 300
            while not staged(out / FOLDS / "1"):  # fold 1 begins once fold 0 is published
                assert process.poll() is None and time.monotonic() < deadline, tail(log)
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    fold0 = versions(out / FOLDS / "0")
    before = {"version": fold0[0].name, "mtime": (fold0[0] / MANIFEST).stat().st_mtime_ns}
    killed = {"fold1": versions(out / FOLDS / "1"), "staged": [p.name for p in staged(out / FOLDS / "1")]}
    rerun = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    return {"catalog": catalog, "out": out, "fold0": before, "killed": killed, "output": rerun.stdout + rerun.stderr}


def tiny_job(catalog: Path, out: Path, **options: Any) -> RecommendJob:
    """The job `command` runs (`options` changed), built in-process."""
    return RecommendJob(load_catalog(catalog), out, RecommendConfig(**{
        "folds": 2, "retriever_epochs": 1, "retriever_max_tokens": 32, "retriever_freeze_layers": 5,
        "candidates": CandidateConfig(dense=8, lexical=4), **options}))


def test_a_killed_run_resumes_without_redoing_its_finished_fold(resumed: dict[str, Any]) -> None:
    out, fold0 = resumed["out"], resumed["fold0"]
    after = versions(out / FOLDS / "0")
    assert [p.name for p in after] == [fold0["version"]]  # not retrained, nothing published beside it
    assert (after[0] / MANIFEST).stat().st_mtime_ns == fold0["mtime"]
    assert f"fold 0 retriever: done (version {fold0['version']})" in resumed["output"]
    assert f"EDURANK_ARTIFACTS={out.resolve()} EDURANK_CATALOG={resumed['catalog'].resolve()}" in resumed["output"]
    summary = json.loads((out / SUMMARY).read_text())
    assert list(summary["steps"]) == STEPS and summary["skipped"] == ["fold 0 retriever"]
    assert set(summary["ranker"]["held_out"]) == {"mean_f2"} and summary["ranker"]["retrieval_only"]
    manifest = Manifest.read(versions(out / RANKER)[0])
    folds = {versions(out / FOLDS / str(fold))[0] for fold in (0, 1)}
    assert {d.fingerprint for d in manifest.depends} == {Manifest.read(p).weights for p in folds}
    assert manifest.params["folds"] == 2


def test_the_interrupted_fold_resumes_from_the_staging_folder_it_left(resumed: dict[str, Any]) -> None:
    """The kill left fold 1 unpublished with its staging folder (checkpoints go there); the rerun trained in
    that folder (named by the same run hash as the version it published) and removed it."""
    killed, fold1 = resumed["killed"], resumed["out"] / FOLDS / "1"
    assert killed["fold1"] == [] and len(killed["staged"]) == 1
    [version] = versions(fold1)
    assert killed["staged"][0].removeprefix(".retriever-")[:8] == version.name.rsplit("-", 1)[1]
    assert staged(fold1) == []


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
    out = resumed["out"]
    job = tiny_job(resumed["catalog"], out)
    job.published = {step: versions(out / FOLDS / str(fold))[0] for fold, step in enumerate(STEPS[:2])}
    assert finished(out / RANKER, job.ranker_expected()) == versions(out / RANKER)[0]
    job.published[STEPS[1]] = versions(out / "retriever")[0]  # another model in fold 1's place
    assert finished(out / RANKER, job.ranker_expected()) is None


def test_the_index_is_not_finished_once_the_served_retriever_or_the_companion_changed(
        resumed: dict[str, Any]) -> None:
    out = resumed["out"]
    job = tiny_job(resumed["catalog"], out)
    job.published = {SERVED: versions(out / "retriever")[0]}
    assert finished(out / INDEX, job.index_expected()) == versions(out / INDEX)[0]
    job.published[SERVED] = versions(out / FOLDS / "0")[0]  # another model served
    assert finished(out / INDEX, job.index_expected()) is None
    job = tiny_job(resumed["catalog"], out, companion="bundled")
    job.published = {SERVED: versions(out / "retriever")[0]}
    assert finished(out / INDEX, job.index_expected()) is None  # it holds no companion's vectors


def test_pending_walks_the_steps_a_finished_job_has_none_left(resumed: dict[str, Any]) -> None:
    """What the job and the quickstart's estimate read: nothing left of a finished set (each step's version in
    `published`); with other retriever options every step, the later ones reading the retrievers."""
    out = resumed["out"]
    job = tiny_job(resumed["catalog"], out)
    assert job.pending() == [] and job.published == {step: versions(out / root)[0] for step, root in zip(
        STEPS, [f"{FOLDS}/0", f"{FOLDS}/1", "retriever", "index", "ranker"], strict=True)}
    assert [step.name for step in tiny_job(resumed["catalog"], out, retriever_epochs=2).pending()] == STEPS


def test_a_damaged_version_is_not_finished(resumed: dict[str, Any], tmp_path: Path) -> None:
    out = resumed["out"]
    job = tiny_job(resumed["catalog"], out)
    job.pending()
    shutil.copytree(out / RANKER, tmp_path / RANKER, ignore=shutil.ignore_patterns(".*"))
    [version] = versions(tmp_path / RANKER)
    assert finished(tmp_path / RANKER, job.ranker_expected()) == version
    name = next(iter(Manifest.read(version).files))
    (version / name).write_bytes((version / name).read_bytes() + b"\0")
    assert finished(tmp_path / RANKER, job.ranker_expected()) is None


def test_a_companion_that_trained_on_these_topics_is_refused_before_any_training(
        resumed: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    companion = versions(resumed["out"] / "retriever")[0]
    out = tmp_path / "out"
    assert main([*command(resumed["catalog"], out), "--companion", str(companion)]) == 2
    printed = capsys.readouterr().err
    assert "--companion" in printed and "trained on these topics" in printed and printed.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(("flags", "error"), [
    (["--groups", "dense,cross"], "--groups cross: it reads the cross-encoder this job trains (--with-cross-encoder)"),
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


def test_the_bar_counts_down_within_a_step_and_its_redrawing_thread_stops_with_it() -> None:
    with pytest.raises(RuntimeError), StepBar("job", {"a": 10.0, "b": 20.0}, interval=0.01) as bar:
        bar.start("a")
        bar.running = ("a", time.monotonic() - 4.5)  # a has run 4.5 s of its 10
        assert bar.remaining() == "~00:25"
        bar.running = ("a", time.monotonic() - 60)  # past its estimate: its share is spent, the rest is not
        assert bar.remaining() == "~00:20"
        time.sleep(0.05)
        assert bar.bar.postfix == "~00:20" and bar.ticker.is_alive()
        raise RuntimeError("a step failed")
    assert not bar.ticker.is_alive()
