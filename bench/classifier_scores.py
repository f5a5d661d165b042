"""Out-of-fold figures of misconception classifiers, side by side: MAP@3 and accuracy@1 on every row, on
the rows a confident-learning pass did not flag ("clean"), and per category; training settings and time.
Runs are compared on the rows every one of them covers (a run of `--train-folds 2` covers two folds).
Train first with `edurank train classifier` (commands in bench/README.md).

    .venv/bin/python bench/classifier_scores.py artifacts/exp/classifier/run1 [more runs] \
        --clean-by artifacts/exp/classifier/run1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl

from edurank.classifier.data import CATEGORIES, ROW
from edurank.classifier.evaluation import classification_report, ranked_labels
from edurank.classifier.predictor import ISSUES, LABELS, OOF, classifier_artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="classifier version dirs or artifact roots")
    parser.add_argument("--blend-with", type=Path, default=None,
                        help="OOF probabilities of another model (bench/classifier_baselines.py --save-oof): "
                             "MAP@3 of each run mixed with them, weight 0-1")
    parser.add_argument("--clean-by", type=Path, default=None,
                        help="the run whose label_issues.parquet defines the clean rows (default: the first)")
    args = parser.parse_args()
    clean_path, _ = classifier_artifact(args.clean_by or args.runs[0])
    flagged = set(pl.read_parquet(clean_path / ISSUES)[ROW].cast(pl.String).to_list())
    oofs = {}
    for run in args.runs:
        path, manifest = classifier_artifact(run)
        oofs[path] = (manifest, pl.read_parquet(path / OOF).filter(pl.col("covered")))
    common = set.intersection(*(set(oof[ROW].cast(pl.String)) for _, oof in oofs.values()))
    print(f"rows covered by every run: {len(common)}; clean rows: those {clean_path.name} did not flag "
          f"({len(flagged & common)} flagged among them)\n")
    print("| run | settings | rows | MAP@3 | acc@1 | clean MAP@3 | clean acc@1 | train min |")
    print("|---|---|---|---|---|---|---|---|")
    categories, blends = {}, {}
    for path, (manifest, oof) in oofs.items():
        params = manifest["params"]
        labels = json.loads((path / LABELS).read_text())["labels"]
        oof = oof.filter(pl.col(ROW).cast(pl.String).is_in(sorted(common)))
        probabilities = np.array(oof["probabilities"].to_list(), dtype=np.float32)
        truth, ranked = oof["label"].to_list(), ranked_labels(probabilities, labels)
        clean = [i for i, row in enumerate(oof[ROW].cast(pl.String)) if row not in flagged]
        every = classification_report(truth, ranked)
        kept = classification_report([truth[i] for i in clean], [ranked[i] for i in clean])
        categories[path.name] = every["categories"]
        if args.blend_with:
            blends[path.name] = blend_curve(args.blend_with, oof, probabilities, labels)
        seeds = ",".join(map(str, params["seeds"]))
        settings = (f"{params['train_folds'] or params['folds']}/{params['folds']} folds x seeds {seeds}, "
                    f"{params['epochs']} ep, "
                    f"frozen {params['freeze_layers']}, len {params['max_length']}, lr {params['learning_rate']}, "
                    f"AWP {params['awp_lr'] or 'off'}, noisy {params['noisy']}")
        minutes = sum(manifest["seconds"].values()) / 60
        print(f"| {path.name} | {settings} | {every['rows']} | **{every['map3']:.4f}** | {every['accuracy1']:.4f} | "
              f"{kept['map3']:.4f} | {kept['accuracy1']:.4f} | {minutes:.1f} |")
    print("\n| run | " + " | ".join(CATEGORIES) + " |")
    print("|---" * (len(CATEGORIES) + 1) + "|")
    for name, figures in categories.items():
        print(f"| {name} MAP@3 | " + " | ".join(f"{figures[c]['map3']:.3f}" if c in figures else "-"
                                                 for c in CATEGORIES) + " |")
    for name, curve in blends.items():
        best = max(curve, key=curve.get)
        print(f"\n{name} x {args.blend_with.name}: " + ", ".join(f"w {w:.1f}: {m:.4f}" for w, m in curve.items())
              + f"; best w {best:.1f} (weight of the run) MAP@3 {curve[best]:.4f}")
    for path, (manifest, _) in oofs.items():
        for member, figures in manifest["metrics"]["members"].items():
            epochs = [f"epoch {h['epoch']}: loss {h['loss']:.3f} MAP@3 {h['map3']:.4f}" for h in figures["history"]]
            print(f"{path.name} {member}: " + ", ".join(epochs))


def blend_curve(other_path: Path, oof: pl.DataFrame, probabilities: np.ndarray,
                labels: list[str]) -> dict[float, float]:
    """MAP@3 of w x the run's probabilities + (1 - w) x the other model's (same label order), for w = 0,
    0.1, ..., 1. The weight is chosen on these same rows: one number, so the optimism is small."""
    other = pl.read_parquet(other_path).select(pl.col(ROW).cast(pl.String), pl.col("probabilities").alias("other"))
    joined = oof.select(pl.col(ROW).cast(pl.String), "label").join(other, on=ROW, how="left", maintain_order="left")
    if joined["other"].null_count():
        raise SystemExit(f"{other_path}: lacks some rows of the run")
    mixed_with = np.array(joined["other"].to_list(), dtype=np.float32)
    truth = joined["label"].to_list()
    return {float(w): classification_report(truth, ranked_labels(w * probabilities + (1 - w) * mixed_with,
                                                                 labels))["map3"]
            for w in np.round(np.linspace(0, 1, 11), 1)}

if __name__ == "__main__":
    main()
