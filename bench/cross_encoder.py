"""The cross-encoder's held-out figures: per fold, how well its logit orders each topic's candidates against
the retriever's own cosine (mean per-topic ROC AUC over the topics with a positive and a negative candidate),
and mean F2 with the logit alone and with the retrieval rank added (Platt options); a probe on a one-gold
catalog also gives MAP@25 of the logit alone on seen and unseen items.

    # from trained artifacts (edurank train reranker)
    .venv/bin/python bench/cross_encoder.py report artifacts/exp/ce-list artifacts/exp/ce-bce
    # a probe: one fold's model only (no other folds, no served model), any `train reranker` flags
    .venv/bin/python bench/cross_encoder.py probe --catalog ../shared/data/curriculum --fold 0 \
        --out artifacts/exp/ce-probe --retriever artifacts/exp/cur-f0 ... --late-interaction
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from edurank.artifacts import hash_json, open_artifact
from edurank.options import add_options, from_args


def per_topic_auc(oof: pl.DataFrame, column: str) -> float:
    aucs = [roc_auc_score(group["label"].to_numpy(), group[column].to_numpy())
            for _, group in oof.group_by("topic_id") if 0 < group["label"].sum() < len(group)]
    return float(np.mean(aucs))


def report(args: argparse.Namespace) -> None:
    print("| reranker | loss | start | late interaction | layers | frozen | folds | "
          "per-topic AUC: logit / dense cosine | F2 logit | F2 logit + rank | F2 retrieval alone | minutes |")
    print("|---" * 12 + "|")
    for path in args.rerankers:
        directory, manifest = open_artifact(path, "reranker")
        oof, params, metrics = pl.read_parquet(directory / "oof.parquet"), manifest.params, manifest.metrics
        folds = sorted(oof["fold"].unique().to_list())
        auc = " ".join(f"{per_topic_auc(part, 'logit'):.3f}/{per_topic_auc(part, 'dense_score'):.3f}"
                       for part in (oof.filter(pl.col("fold") == f) for f in folds))
        options = metrics["calibration_options"]
        print(f"| {path} | {params['loss']} | {params['init']} | {params.get('late_interaction', False)} | "
              f"{params.get('layers') or 'all'} | {params['freeze_layers']} | {','.join(map(str, folds))} | {auc} | "
              f"{options['logit']['held_out_mean_f2']:.3f} | {options['logit+rank']['held_out_mean_f2']:.3f} | "
              f"{metrics['retrieval_only']['mean_f2']:.3f} | {manifest.seconds['train'] / 60:.1f} |")


def probe(args: argparse.Namespace) -> None:
    """Train the fold's model as cross-fitting would and score the fold's candidates with it."""
    from edurank.retriever.catalog import load_catalog
    from edurank.training.candidates import candidates_for, ranked_rows
    from edurank.training.config import RerankerConfig
    from edurank.training.ranker import seen_and_unseen
    from edurank.training.reranker import fold_inits, fold_trainer, with_pair_texts

    config = from_args(RerankerConfig, args)
    catalog = load_catalog(args.catalog)
    started = time.perf_counter()
    mined = candidates_for(catalog, args.retriever, args.out, config)
    crossfit = mined.crossfit
    rows = ranked_rows(mined.candidates, crossfit)
    init = fold_inits(config, catalog, crossfit, mined.plan)[args.probe_fold]
    trainer = fold_trainer(config, catalog, rows, crossfit, args.probe_fold, init,
                           args.out / f"probe-{args.probe_fold}-{hash_json(dataclasses.asdict(config))[:8]}",
                           args.out / ".cache")
    reranker = trainer.run()
    held_out = rows.filter(pl.col("fold") == args.probe_fold)
    held_out = held_out.with_columns(pl.Series("logit", reranker.logits(with_pair_texts(held_out, catalog, reranker))))
    print(f"fold {args.probe_fold}: {held_out['topic_id'].n_unique()} topics, per-topic AUC logit "
          f"{per_topic_auc(held_out, 'logit'):.4f}, dense cosine {per_topic_auc(held_out, 'dense_score'):.4f}; "
          f"{(time.perf_counter() - started) / 60:.1f} min; losses {[round(h['loss'], 3) for h in trainer.history]}")
    if all(len(catalog.gold[t]) == 1 for t in held_out["topic_id"].unique()):  # one gold item: MAP@25 by item
        by_item = seen_and_unseen(held_out.with_columns(pl.col("logit").alias("probability")), catalog, crossfit)
        print("MAP@25, retrieval alone -> logit alone: " + "; ".join(
            f"{name} ({f['topics']} topics) {f['retrieval_map@25']:.4f} -> {f['map@25']:.4f}"
            for name, f in by_item.items()))


def main() -> None:
    from edurank.training.config import RerankerConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    figures = commands.add_parser("report")
    figures.add_argument("rerankers", nargs="+")
    one = commands.add_parser("probe")
    one.add_argument("--catalog", type=Path, required=True)
    one.add_argument("--retriever", action="append", required=True)
    one.add_argument("--out", type=Path, required=True, help="mined candidates and trunk caches are kept here")
    one.add_argument("--probe-fold", type=int, default=0, help="the fold held out and scored")
    add_options(one, RerankerConfig)
    args = parser.parse_args()
    (report if args.command == "report" else probe)(args)


if __name__ == "__main__":
    main()
