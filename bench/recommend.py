"""Held-out figures of the full pipeline (retrieve -> rerank -> rule) from a reranker trained with
cross-fitting: per fold, each fold scored by models that never saw it and with a rule tuned on the other
folds' out-of-fold probabilities. Train first with `edurank train reranker` (commands in bench/README.md).

    .venv/bin/python bench/recommend.py artifacts/bench/rr-curriculum
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edurank.artifacts import read_manifest, resolve

COLUMNS = ("topics", "mean_f2", "mean_precision", "mean_recall", "candidate_recall", "map@25", "retrieval_map@25")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reranker", type=Path, help="a reranker version dir or artifact root")
    manifest = read_manifest(resolve(parser.parse_args().reranker))
    metrics = manifest["metrics"]
    if not metrics:
        raise SystemExit("this reranker was trained without cross-fitting: use `edurank evaluate recommend --fold`")
    params = manifest["params"]
    print(f"reranker {manifest['version']}: {params['candidates']} candidates, {params['epochs']} epoch(s), "
          f"{params['negatives']} negatives/topic, trained in {manifest['seconds']['train'] / 60:.1f} min")
    print("retrievers: " + ", ".join(f"{r['version'] or r['path']}" for r in manifest["depends"]))
    print(f"rule tuned on all OOF: {manifest['details']['rule']}; calibration {manifest['details']['calibration']}")
    columns = [c for c in COLUMNS if c in metrics["held_out"]]
    print("| fold | " + " | ".join(columns) + " | rule (tuned on the other folds) |")
    print("|---" * (len(columns) + 2) + "|")
    for fold, figures in metrics["folds"].items():
        rule = figures["rule"]
        print(f"| {fold} | " + " | ".join(fmt(figures[c]) for c in columns)
              + f" | t={rule['threshold']:.2f} cap={rule['max_items']} |")
    print("| **all** | " + " | ".join(fmt(metrics["held_out"][c]) for c in columns) + " | |")
    if "retrieval_only" in metrics:
        print("| all, retrieval alone | " + " | ".join(fmt(metrics["retrieval_only"].get(c, float("nan")))
                                                   for c in columns) + " | rank only, own rule |")
    for name, option in metrics.get("calibration_options", {}).items():
        chosen = " (chosen)" if name == metrics.get("calibration_chosen") else ""
        print(f"calibration on {name}{chosen}: held-out mean F2 {option['held_out_mean_f2']:.3f}")


def fmt(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}"


if __name__ == "__main__":
    main()
