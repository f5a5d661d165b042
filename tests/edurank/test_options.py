"""Options declared once: flags, defaults and help come from the config dataclass, and parse back into it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from edurank.errors import InputError
from edurank.options import add_options, from_args, option


@dataclass(frozen=True)
class Inner:
    width: int = option(8, "inner width", minimum=1)


@dataclass
class Job:
    learning_rate: float = option(5e-5, "peak learning rate", flag="--lr")
    seeds: tuple[int, ...] = option((42,), "comma-separated seeds")
    fold: int | None = option(None, "held-out fold")
    symmetric: bool = option(False, "both directions")
    mode: str = option("fast", "which path", choices=("fast", "slow"))
    inner: Inner = option(factory=Inner)
    internal: str = option("x", cli=False)

    def __post_init__(self) -> None:
        if self.fold is not None and self.fold < 0:
            raise InputError(f"--fold {self.fold}: must be >= 0")


def parser() -> argparse.ArgumentParser:
    built = argparse.ArgumentParser(prog="job", exit_on_error=False)
    add_options(built, Job)
    return built


def test_defaults_round_trip_to_the_dataclass_defaults() -> None:
    assert from_args(Job, parser().parse_args([])) == Job()


def test_flags_parse_into_typed_nested_values() -> None:
    args = parser().parse_args(["--lr", "1e-3", "--seeds", "1,2", "--fold", "0", "--symmetric", "--mode", "slow",
                                "--width", "3"])
    assert from_args(Job, args) == Job(1e-3, (1, 2), 0, True, "slow", Inner(3))
    assert from_args(Job, parser().parse_args(["--no-symmetric"])).symmetric is False


def test_help_shows_each_option_once_with_its_default() -> None:
    text = parser().format_help()
    assert "peak learning rate (default: 5e-05)" in text and "inner width (default: 8)" in text
    assert text.count("--lr") == 2 and "--internal" not in text and "--learning-rate" not in text


@pytest.mark.parametrize("argv", [["--width", "0"], ["--seeds", "1,x"], ["--mode", "medium"], ["--lr", "fast"]])
def test_bad_values_are_usage_errors_naming_the_flag(argv: list[str]) -> None:
    with pytest.raises(argparse.ArgumentError, match=argv[0]):
        parser().parse_args(argv)


def test_the_config_validates_what_flags_cannot() -> None:
    with pytest.raises(InputError, match="--fold -1"):
        from_args(Job, parser().parse_args(["--fold", "-1"]))


def test_a_costly_default_waits_until_the_command_runs() -> None:
    probed: list[str] = []

    def probe(text: str) -> tuple[str, ...]:  # stands in for asking torch whether there is a GPU
        probed.append(text)
        return ("fast",) if text == "auto" else (text,)

    @dataclass
    class Paths:
        paths: tuple[str, ...] = option(help="which paths", factory=lambda: probe("auto"), parse=probe,
                                        cli_default="auto")

    built = argparse.ArgumentParser(prog="job")
    add_options(built, Paths)
    assert probed == [] and "which paths (default: auto)" in built.format_help()
    assert from_args(Paths, built.parse_args([])) == Paths() and probed == ["auto", "auto"]
    assert from_args(Paths, built.parse_args(["--paths", "slow"])).paths == ("slow",)


def test_every_train_job_has_its_config_options() -> None:
    from edurank.cli.main import TRAIN_JOBS, build_parser

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if isinstance(a, argparse._SubParsersAction)).choices
    from edurank.training.config import EngineOptions

    for job, (_, _, config) in TRAIN_JOBS.items():
        text = train[job].format_help()
        assert "--seed" in text, job
        if issubclass(config, EngineOptions):  # the jobs that train a network on the shared loop
            assert "--device" in text and "--model" in text, job
        assert from_args(config, train[job].parse_args(["--out", "x", *required(job)])) == config()


def required(job: str) -> list[str]:
    return {"retriever": ["--catalog", "c"], "recommend": ["--catalog", "c"],
            "reranker": ["--catalog", "c", "--retriever", "bundled"],
            "ranker": ["--catalog", "c", "--retriever", "bundled"]}.get(
        job, ["--data", "d"])
