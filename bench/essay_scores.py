"""Out-of-fold figures of an essay scorer, read from its manifest: MCRMSE per member (dense features,
TF-IDF, fine-tuned) and for the blend, per trait, per fold, with the training time of each path. Train
first with `edurank train essays` (commands in bench/README.md).

    .venv/bin/python bench/essay_scores.py artifacts/bench/essays
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edurank.artifacts import read_manifest, resolve
from edurank.essays.data import TRAITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scorer", type=Path, help="an essay scorer version dir or artifact root")
    path = resolve(parser.parse_args().scorer)
    manifest = read_manifest(path)
    metrics, params = manifest["metrics"], manifest["params"]
    tune, windows = params["finetune"], params["windows"]
    print(f"essay scorer {manifest['version']}: {manifest['data']['essays']} essays, {params['folds']} folds "
          f"(multilabel-stratified, seed {params['seed']}), windows {windows['max_tokens']}/{windows['stride']}, "
          f"paths {', '.join(params['paths'])}")
    if "finetune" in params["paths"]:
        print(f"fine-tuned: {tune['epochs']} epoch(s), pooling {tune['pooling']}, loss {tune['loss']}, "
              f"lr {tune['learning_rate']} (LLRD {tune['layer_decay']}), frozen layers {tune['freeze_layers']}, "
              f"FGM {tune['fgm_epsilon'] or 'off'}")
    print(f"out-of-fold essays: {metrics['oof_essays']}; training time: "
          + ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in manifest["seconds"].items()))
    print("| member | MCRMSE | " + " | ".join(TRAITS) + " |")
    print("|---" * (len(TRAITS) + 2) + "|")
    for name, report in metrics["oof"].items():
        print(f"| {name} | **{report['mcrmse']:.4f}** | "
              + " | ".join(f"{report['rmse'][trait]:.3f}" for trait in TRAITS) + " |")
    print(f"predicting the mean: {metrics['oof']['blend']['mean_baseline_mcrmse']:.4f}")
    for fold, figures in metrics["folds"].items():
        print(f"fine-tuned {fold}: MCRMSE {figures['mcrmse']:.4f} in {figures['seconds'] / 60:.1f} min; "
              + ", ".join(f"epoch {h['epoch']}: loss {h['loss']:.3f} MCRMSE {h['mcrmse']:.4f}"
                          for h in figures["history"]))
    blend = json.loads((path / "blend.json").read_text())
    print("\n| blend weight | " + " | ".join(TRAITS) + " |")
    print("|---" * (len(TRAITS) + 1) + "|")
    for member in blend["members"]:
        print(f"| {member} | " + " | ".join(f"{blend['weights'][trait][member]:.2f}" for trait in TRAITS) + " |")


if __name__ == "__main__":
    main()
