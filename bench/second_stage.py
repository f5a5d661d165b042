"""The LightGBM second stage on a catalog: an ablation table of cross-fitted (held-out) figures, and the
milliseconds stage 2 costs per topic.

    # ablation: retrieval alone (its own tuned rule), the full ranker (binary and lambdarank), the ranker
    # without each feature group and without every group that reads the catalog's links (graph, neighbours,
    # neighbour_items); every row cross-fitted on the same mined candidates (mined once, cached); one-gold
    # catalogs also print MAP@25 on seen and unseen items.
    # With --cross-encoder RERANKER (cross-fitted by `train reranker` on the same candidates), also the
    # cross-encoder alone and the ranker with its logits as the cross group
    .venv/bin/python bench/second_stage.py ablation --catalog ../shared/data/curriculum --out artifacts/exp/ranker \\
        --retriever artifacts/exp/cur-f0 ... --retriever artifacts/exp/cur-f4
    # latency: one topic at a time through the served path (hybrid candidates -> features -> rank)
    .venv/bin/python bench/second_stage.py latency --catalog ../shared/data/curriculum --ranker artifacts/exp/ranker \\
        --retriever artifacts/exp/cur-f0 --topics 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edurank.options import add_options, from_args

COLUMNS = ("mean_f2", "mean_precision", "mean_recall", "candidate_recall", "map@25")


def row(name: str, figures: dict[str, Any], minutes: float | None = None) -> str:
    cells = [f"{figures[c]:.4f}" if c in figures else "-" for c in COLUMNS]
    return f"| {name} | " + " | ".join(cells) + (f" | {minutes:.2f} |" if minutes is not None else " | - |")


def ablation(args: argparse.Namespace) -> None:
    from edurank.artifacts import Manifest, model_ref, resolve
    from edurank.encoders import fingerprint
    from edurank.reranker.lightgbm.config import LINK_GROUPS
    from edurank.retriever.catalog import load_catalog
    from edurank.training.candidates import mined_for
    from edurank.training.config import RankerConfig
    from edurank.training.ranker import candidates_for, evaluate_ranker, with_companion, with_cross_logits

    catalog = load_catalog(args.catalog)
    base = from_args(RankerConfig, args)
    started = time.perf_counter()
    mined = candidates_for(catalog, args.retriever, args.out, base, **mined_for(base.groups))
    candidates, _ = with_cross_logits(mined.candidates, base, [model_ref(p, fingerprint(p)) for p in mined.plan],
                                      catalog.data_hash)
    mined, _ = with_companion(dataclasses.replace(mined, candidates=candidates), catalog, base.companion,
                              args.out / ".cache")
    print(f"candidates: {len(candidates)} rows for {candidates['topic_id'].n_unique()} topics, "
          f"{(time.perf_counter() - started) / 60:.1f} min (0 when cached)")
    variants: list[tuple[str, Any]] = [(f"ranker, all groups, {objective}",
                                        dataclasses.replace(base, objective=objective))
                                       for objective in args.objectives.split(",")]
    ablate = args.ablate.split(",") if args.ablate else list(base.groups)
    if set(ablate) - set(base.groups):
        raise SystemExit(f"--ablate: {sorted(set(ablate) - set(base.groups))} not among the groups {base.groups}")
    removed = [(group,) for group in ablate]
    if len(set(LINK_GROUPS) & set(base.groups)) > 1:  # what only a catalog's own links teach, off together
        removed.append(tuple(g for g in LINK_GROUPS if g in base.groups))
    variants += [(f"ranker without {' and '.join(groups)}", dataclasses.replace(
        base, groups=tuple(g for g in base.groups if g not in groups),
        cross_encoder=None if "cross" in groups else base.cross_encoder,
        companion=None if "companion" in groups else base.companion)) for groups in removed]
    print("| variant | " + " | ".join(COLUMNS) + " | minutes |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    report: dict[str, Any] = {}
    for index, (name, config) in enumerate(variants):
        started = time.perf_counter()
        _, _, rule, metrics = evaluate_ranker(catalog, mined, config)
        minutes = (time.perf_counter() - started) / 60
        if index == 0:
            print(row(f"retrieval alone (rule {rule_text(metrics['retrieval_only']['rule'])})",
                      metrics["retrieval_only"]), flush=True)
            print(f"candidate recall: {json.dumps(metrics['candidate_recall'])}", flush=True)
            if base.cross_encoder:  # its own cross-fitted figures on the same rows and folds
                trained = Manifest.read(resolve(base.cross_encoder))
                print(row(f"cross-encoder alone, {trained.params['loss']} (rule {rule_text(trained.details['rule'])})",
                          trained.metrics["held_out"], trained.seconds["train"] / 60), flush=True)
        print(row(f"{name} (rule {rule_text(rule.to_dict())})", metrics["held_out"], minutes), flush=True)
        for part, figures in metrics.get("by_item", {}).items():  # one-gold catalogs: seen and unseen items apart
            print(f"|   {part} items ({figures['topics']} topics): MAP@25 {figures['retrieval_map@25']:.4f} alone -> "
                  f"{figures['map@25']:.4f} |", flush=True)
        report[name] = {k: metrics[k] for k in ("held_out", "retrieval_only", "by_item") if k in metrics}
        for fold, figures in metrics["folds"].items():
            report[name][f"fold {fold}"] = figures
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def rule_text(rule: dict[str, Any]) -> str:
    return f"t {rule['threshold']:.2f}, cap {rule['max_items']}, margin {rule['margin']:.2f}"


def latency(args: argparse.Namespace) -> None:
    from edurank.pipelines.recommend import STAGE_TWO, Query, Recommender, ranker_companion
    from edurank.reranker.cross_encoder.model import Reranker
    from edurank.reranker.lightgbm.model import Ranker
    from edurank.retriever.catalog import load_catalog
    from edurank.retriever.index_job import in_memory_index
    from edurank.retriever.model import BiEncoder
    from edurank.retriever.texts import topic_parts
    from edurank.timing import StageTimes

    catalog = load_catalog(args.catalog)
    encoder, ranker = BiEncoder.load(args.retriever), Ranker.load(args.ranker)
    reranker = Reranker.load(args.reranker) if args.reranker else None
    problem = ranker.cross_encoder_problem(reranker.fingerprint if reranker else None)
    if problem:
        raise SystemExit(f"--ranker: {problem}; give it with --reranker")
    companion = ranker_companion(ranker)
    index = in_memory_index(encoder, catalog, companion=companion)
    recommender = Recommender(encoder, index, catalog.content, reranker, ranker=ranker, topics=catalog.topics,
                              companion=companion)
    topics = catalog.topics.filter(catalog.topics["id"].is_in(list(catalog.gold))).head(args.topics)
    queries = [Query(parts, topic_id=t, language=lang) for parts, t, lang in
               zip(topic_parts(topics), topics["id"], topics["language"], strict=True)]
    recommender.rank_with_ranker(queries[:5])  # warm-up
    per_topic: dict[str, list[float]] = {}
    counts = []
    for query in queries:
        timer = StageTimes()
        frame = recommender.rank_with_ranker([query], timer)[0]
        counts.append(len(frame))
        for stage, seconds in timer.seconds.items():
            per_topic.setdefault(stage, []).append(1000 * seconds)
    stages = [s for s in STAGE_TWO if s in per_topic]
    stage_two = np.sum([per_topic[s] for s in stages], axis=0)
    print(f"{len(queries)} topics one at a time, {np.mean(counts):.1f} candidates per topic "
          f"({dataclasses.asdict(ranker.candidates)}), {len(catalog.content)} items")
    for stage, values in [*per_topic.items(), (f"stage 2 ({' + '.join(stages)})", list(stage_two))]:
        print(f"  {stage:<40} mean {np.mean(values):7.2f} ms  p50 {np.percentile(values, 50):7.2f}  "
              f"p99 {np.percentile(values, 99):7.2f}")


def main() -> None:
    from edurank.training.config import RankerConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("ablation")
    table.add_argument("--catalog", type=Path, required=True)
    table.add_argument("--retriever", action="append", required=True)
    table.add_argument("--out", type=Path, required=True, help="where the mined candidates are cached")
    table.add_argument("--json", type=Path, default=None, help="also write every variant's figures here")
    table.add_argument("--objectives", default="binary,lambdarank", help="the full ranker's rows, one per objective")
    table.add_argument("--ablate", default=None, help="the groups each dropped in a row of its own (default: "
                       "every group; the catalog's link groups are also dropped together)")
    add_options(table, RankerConfig)
    timing = commands.add_parser("latency")
    timing.add_argument("--catalog", type=Path, required=True)
    timing.add_argument("--retriever", required=True)
    timing.add_argument("--ranker", required=True)
    timing.add_argument("--reranker", default=None, help="the cross-encoder a ranker with the cross group reads")
    timing.add_argument("--topics", type=int, default=200)
    args = parser.parse_args()
    (ablation if args.command == "ablation" else latency)(args)


if __name__ == "__main__":
    main()
