"""The cross-encoder's held-out figures from its artifacts: per fold, how well its logit orders each topic's
candidates against the retriever's own cosine (mean per-topic ROC AUC over the topics with a positive and a
negative candidate), and mean F2 with the logit alone and with the retrieval rank added (Platt options).

    .venv/bin/python bench/cross_encoder.py artifacts/exp/ce-list artifacts/exp/ce-bce artifacts/exp/ce-late
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from edurank.artifacts import open_artifact


def per_topic_auc(oof: pl.DataFrame, column: str) -> float:
    aucs = [roc_auc_score(group["label"].to_numpy(), group[column].to_numpy())
            for _, group in oof.group_by("topic_id") if 0 < group["label"].sum() < len(group)]
    return float(np.mean(aucs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rerankers", nargs="+")
    args = parser.parse_args()
    print("| reranker | loss | start | late interaction | frozen | folds | per-topic AUC: logit / dense cosine | "
          "F2 logit | F2 logit + rank | F2 retrieval alone | minutes |")
    print("|---" * 11 + "|")
    for path in args.rerankers:
        directory, manifest = open_artifact(path, "reranker")
        oof, params, metrics = pl.read_parquet(directory / "oof.parquet"), manifest.params, manifest.metrics
        folds = sorted(oof["fold"].unique().to_list())
        auc = " ".join(f"{per_topic_auc(part, 'logit'):.3f}/{per_topic_auc(part, 'dense_score'):.3f}"
                       for part in (oof.filter(pl.col("fold") == f) for f in folds))
        options = metrics["calibration_options"]
        print(f"| {path} | {params['loss']} | {params['init']} | {params.get('late_interaction', False)} | "
              f"{params['freeze_layers']} | {','.join(map(str, folds))} | {auc} | "
              f"{options['logit']['held_out_mean_f2']:.3f} | {options['logit+rank']['held_out_mean_f2']:.3f} | "
              f"{metrics['retrieval_only']['mean_f2']:.3f} | {manifest.seconds['train'] / 60:.1f} |")


if __name__ == "__main__":
    main()
