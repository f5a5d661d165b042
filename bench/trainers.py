"""Each trainer's integration-test run (the same slices of ../shared/data and configs as tests/integration),
on one or more devices in one process: prints each run's held-out figures and seconds, and the speed-up of
every device over the first one. Used to check that the shared training engine keeps each trainer's figures,
and to measure what a GPU buys per trainer.

    .venv/bin/python bench/trainers.py                                 # all four on the CPU
    .venv/bin/python bench/trainers.py --devices cpu,cuda --trainers essays,classifier
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edurank.artifacts import read_manifest  # noqa: E402
from edurank.essays.config import WindowSpec  # noqa: E402
from edurank.retriever.catalog import load_catalog  # noqa: E402
from edurank.retriever.config import CandidateConfig
from edurank.training.classifier import train_classifier  # noqa: E402
from edurank.training.config import (  # noqa: E402
    ClassifierConfig,  # noqa: E402
    EssayConfig,
    FineTuneConfig,
    RerankerConfig,  # noqa: E402
    RetrieverConfig,  # noqa: E402
)
from edurank.training.essays import train_essays  # noqa: E402
from edurank.training.reranker import train_reranker  # noqa: E402
from edurank.training.retriever import train_retriever  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402
from tests.integration.test_curriculum_training import slice_catalog  # noqa: E402


def retriever(work: Path, device: str) -> dict[str, Any]:
    catalog = load_catalog(slice_catalog(SHARED_DATA / "curriculum", work / "slice"))
    config = RetrieverConfig(rounds=0, epochs=2, batch_size=32, max_tokens=64, freeze_layers=2, learning_rate=1e-4,
                             folds=4, fold=0, eval_ks=(5, 10, 20), device=device)
    history = read_manifest(train_retriever(catalog, work / "model", config))["metrics"]["history"]
    return {"untrained recall@10": history[0]["recall@10"], "recall@10": history[-1]["recall@10"],
            "recall@20": history[-1]["recall@20"]}


def reranker(work: Path, device: str) -> dict[str, Any]:
    catalog = load_catalog(slice_catalog(SHARED_DATA / "curriculum", work / "slice", 60))
    config = RerankerConfig(candidates=CandidateConfig(8, 4), hard_negatives=4, negatives=4, epochs=1, batch_size=16,
                            topic_tokens=24, content_tokens=40, freeze_layers=3, learning_rate=1e-4, folds=3,
                            device=device)
    metrics = read_manifest(train_reranker(catalog, ["bundled"], work / "reranker", config))["metrics"]
    return {"held-out mean F2": metrics["held_out"]["mean_f2"],
            "retrieval-only mean F2": metrics["retrieval_only"]["mean_f2"]}


def essays(work: Path, device: str) -> dict[str, Any]:
    data = work / "essays.csv"
    pl.read_csv(SHARED_DATA / "fb3" / "train.csv").head(240).write_csv(data)
    tune = FineTuneConfig(epochs=1, essays_per_batch=8, evals_per_epoch=1, freeze_layers=4, learning_rate=1e-4)
    config = EssayConfig(paths=("fast", "finetune"), folds=3, train_folds=1, windows=WindowSpec(128, 112),
                         finetune=tune, device=device)
    metrics = read_manifest(train_essays(data, work / "out", config))["metrics"]
    return {f"{member} MCRMSE": figures["mcrmse"] for member, figures in metrics["oof"].items()}


def classifier(work: Path, device: str) -> dict[str, Any]:
    data = work / "responses.csv"
    pl.read_csv(SHARED_DATA / "map" / "train.csv", infer_schema_length=0).sample(600, seed=0).write_csv(data)
    config = ClassifierConfig(folds=3, train_folds=1, max_length=96, freeze_layers=5, epochs=2, learning_rate=2e-4,
                              head_learning_rate=3e-3, device=device)
    metrics = read_manifest(train_classifier(data, work / "out", config))["metrics"]
    return {"MAP@3": metrics["oof"]["map3"], "accuracy@1": metrics["oof"]["accuracy1"]}


TRAINERS: dict[str, Callable[[Path, str], dict[str, Any]]] = {
    "retriever": retriever, "reranker": reranker, "essays": essays, "classifier": classifier}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="comma-separated, from " + ", ".join(TRAINERS))
    parser.add_argument("--devices", default="cpu", help="comma-separated devices; speed-ups are over the first")
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        sys.exit(f"{SHARED_DATA} is absent: these runs read ../shared/data")
    devices = args.devices.split(",")
    rows = []
    for name in args.trainers.split(","):
        seconds: dict[str, float] = {}
        for device in devices:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as work:
                figures = TRAINERS[name](Path(work), device)
            seconds[device] = time.perf_counter() - started
            rows.append({"trainer": name, "device": device, "seconds": round(seconds[device], 1),
                         "speed-up": round(seconds[devices[0]] / seconds[device], 2),
                         **{k: round(v, 4) for k, v in figures.items()}})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| trainer | device | seconds | speed-up | figures |\n|---|---|---|---|---|")
    for row in rows:
        figures = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("trainer", "device", "seconds",
                                                                              "speed-up"))
        print(f"| {row['trainer']} | {row['device']} | {row['seconds']} | {row['speed-up']}x | {figures} |")


if __name__ == "__main__":
    main()
