"""The curator's loop: a simulated curator reviews served top-10 lists, its decisions go into a real feedback
store, and the ranker retrains on them (`train_ranker` with `feedback=` the store); mean F2 on a fold no
model and no curator ever saw, before and after, over rounds of review.

Topic folds as training cuts them (5; misconceptions grouped by construct, so a construct's wrong answers
stay in one fold). Fold R (reviewed) and fold E (evaluated) are held out for good: the base ranker trains
on the other folds' links alone, with candidates mined by the bundled model (which never saw any topic, so
one retriever serves every topic). Round r serves the next `--round-topics` topics of fold R through the
served path (Recommender over an in-memory index of the catalog, as `edurank evaluate recommend` does) with
the latest ranker, and the curator accepts the gold items among each topic's top 10 by probability and
rejects the rest; the decisions are recorded in a SQLite FeedbackStore and the ranker retrains on all of
them, publishing a version that LATEST names (what a service's watcher hot-swaps). The control ("full gold")
trains instead on the reviewed topics' complete gold links: what a curator who also found every missed item
would give.

    .venv/bin/python bench/curator.py --catalog curriculum --out artifacts/reports/curator-curriculum.json
    .venv/bin/python bench/curator.py --catalog misconceptions --out artifacts/reports/curator-misconceptions.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

CATALOGS = ("curriculum", "misconceptions")
FIGURES = ("mean_f2", "mean_precision", "mean_recall", "map@25")


def write_links(path: Path, links: pl.DataFrame) -> Path:
    """(topic_id, content_id) rows as an LECR correlations file (content ids space-separated)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    links.group_by("topic_id", maintain_order=True).agg(pl.col("content_id").str.join(" ").alias("content_ids")) \
        .write_csv(path)
    return path


class Loop:
    """One catalog's folds, served path and feedback store."""

    def __init__(self, args: argparse.Namespace) -> None:
        from edurank.retriever.catalog import load_catalog
        from edurank.retriever.index_job import in_memory_index
        from edurank.retriever.model import BiEncoder
        from edurank.retriever.topic_folds import topic_folds
        from edurank.training.config import RankerConfig

        self.args, self.directory = args, args.data / args.catalog
        self.group_by = "construct" if args.catalog == "misconceptions" else None
        self.load = lambda links: load_catalog(self.directory, correlations=links)
        self.catalog = self.load(None)
        folds = topic_folds(self.catalog, args.folds, args.seed, self.group_by)
        held = {args.reviewed_fold, args.evaluated_fold}
        reviewed = sorted(t for t, f in folds.items() if f == args.reviewed_fold)
        self.reviewed = [reviewed[i] for i in np.random.default_rng(args.seed).permutation(len(reviewed))]
        self.evaluated = sorted(t for t, f in folds.items() if f == args.evaluated_fold)
        self.training = sorted(t for t, f in folds.items() if f not in held)
        self.config = RankerConfig(group_by=self.group_by, seed=args.seed)
        self.work = args.work
        self.base_links = self.catalog.correlations.filter(pl.col("topic_id").is_in(self.training))
        self.base = self.load(write_links(self.work / "links" / "base.csv", self.base_links))
        self.encoder = BiEncoder.load("bundled")
        self.index = in_memory_index(self.encoder, self.catalog)

    def recommender(self, ranker_path: Path) -> Any:
        from edurank.pipelines.recommend import Recommender, VectorCache
        from edurank.reranker.lightgbm.model import Ranker

        return Recommender(self.encoder, self.index, self.catalog.content, ranker=Ranker.load(ranker_path),
                           topics=self.catalog.topics, cache=VectorCache(8192))

    def queries(self, topic_ids: list[str]) -> list[Any]:
        from edurank.pipelines.recommend import Query
        from edurank.retriever.texts import topic_parts

        topics = self.catalog.topics_in_order(topic_ids)
        return [Query(parts, topic_id=t, language=lang)
                for parts, t, lang in zip(topic_parts(topics), topics["id"], topics["language"], strict=True)]

    def train(self, root: str, catalog: Any, feedback: Path | None = None) -> tuple[Path, float]:
        from edurank.artifacts import resolve
        from edurank.training.ranker import train_ranker

        started = time.perf_counter()
        config = dataclasses.replace(self.config, feedback=str(feedback) if feedback else None)
        train_ranker(catalog, ["bundled"], self.work / root, config)
        return resolve(self.work / root), time.perf_counter() - started  # LATEST: what a watcher loads

    def evaluate(self, ranker_path: Path) -> dict[str, Any]:
        """`edurank evaluate recommend`'s figures on fold E (the ranker's tuned rule), and each topic's F2."""
        from edurank.pipelines.evaluation import evaluate_recommend
        from edurank.reranker.decision import fbeta

        recommender = self.recommender(ranker_path)
        report = evaluate_recommend(recommender, self.catalog, self.evaluated)
        returned = recommender.recommend(self.queries(self.evaluated), top_k=10**6)
        gold = [self.catalog.gold[t] for t in self.evaluated]
        hits = np.array([len(set(frame["id"].to_list()) & g) for frame, g in zip(returned, gold, strict=True)])
        f2 = fbeta(hits, np.array([len(f) for f in returned]), np.array([len(g) for g in gold]))
        assert abs(f2.mean() - report["mean_f2"]) < 1e-6, (f2.mean(), report["mean_f2"])
        return {**{k: round(report[k], 4) for k in FIGURES if k in report}, "rule": report["rule"],
                "per_topic_f2": f2.round(4).tolist()}

    def review(self, ranker_path: Path, topic_ids: list[str]) -> list[Any]:
        """The simulated curator's decisions on each topic's served top 10 by probability (before the rule's
        cut, as the review page lists them): gold items accepted, the others rejected."""
        from edurank.feedback import Decision

        version = ranker_path.name
        decisions = []
        for topic, frame in zip(topic_ids, self.recommender(ranker_path).scored_candidates(self.queries(topic_ids)),
                                strict=True):
            gold = self.catalog.gold[topic]
            for rank, (item, probability) in enumerate(frame.head(self.args.top).select("id", "probability")
                                                       .iter_rows(), start=1):
                decisions.append(Decision(topic, item, "accepted" if item in gold else "rejected",
                                          who="simulated curator", rank=rank, probability=float(probability),
                                          versions={"ranker": version}, source="review"))
        return decisions


def paired(after: list[float], before: list[float]) -> dict[str, float]:
    """Mean per-topic F2 change on the same topics, with its standard error."""
    delta = np.asarray(after) - np.asarray(before)
    return {"mean": round(float(delta.mean()), 4), "se": round(float(delta.std(ddof=1) / np.sqrt(len(delta))), 4)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edurank.feedback import FeedbackStore
    from edurank.training.candidates import candidates_for, mined_for

    started = time.perf_counter()
    loop = Loop(args)
    db = loop.work / "feedback.sqlite"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    # every topic's candidates mined once (the cache serves every later training, whatever its links)
    candidates_for(loop.catalog, ["bundled"], loop.work / "ranker", loop.config, **mined_for(loop.config.groups))
    setup = time.perf_counter() - started
    print(f"{args.catalog}: {len(loop.training)} training topics, fold {args.reviewed_fold} reviewed "
          f"({len(loop.reviewed)} topics), fold {args.evaluated_fold} evaluated ({len(loop.evaluated)}); "
          f"index and mining {setup / 60:.1f} min", flush=True)
    ranker, seconds = loop.train("ranker", loop.base)
    before = loop.evaluate(ranker)
    print(f"before feedback: {json.dumps({k: before[k] for k in FIGURES if k in before})} "
          f"(trained in {seconds:.0f} s)", flush=True)
    store = FeedbackStore.open(db)
    rounds: list[dict[str, Any]] = []
    totals = {"accepted": 0, "rejected": 0}
    checkpoints = sorted(set(args.rounds))
    for round_ in range(1, max(checkpoints) + 1):
        topics = loop.reviewed[(round_ - 1) * args.round_topics:round_ * args.round_topics]
        decisions = loop.review(ranker, topics)
        store.record(decisions)
        accepted = sum(d.decision == "accepted" for d in decisions)
        totals = {"accepted": totals["accepted"] + accepted,
                  "rejected": totals["rejected"] + len(decisions) - accepted}
        gold = sum(len(loop.catalog.gold[t]) for t in topics)
        ranker, seconds = loop.train("ranker", loop.base, db)
        reviewed = loop.reviewed[:round_ * args.round_topics]
        entry: dict[str, Any] = {
            "round": round_, "topics": len(topics), "reviewed_topics": len(reviewed), "accepted": accepted,
            "rejected": len(decisions) - accepted, "gold_in_top": round(accepted / gold, 4),
            "topics_with_accepted": len({d.topic_id for d in decisions if d.decision == "accepted"}),
            "accepted_so_far": totals["accepted"], "rejected_so_far": totals["rejected"],
            "version": ranker.name, "train_seconds": round(seconds, 1)}
        exhausted = len(reviewed) == len(loop.reviewed)  # fold R has no topics for a later checkpoint
        if round_ in checkpoints or (exhausted and round_ < max(checkpoints)):
            entry["after"] = loop.evaluate(ranker)
            entry["change"] = paired(entry["after"]["per_topic_f2"], before["per_topic_f2"])
            if args.full_gold == "every" or (args.full_gold == "last" and (exhausted or round_ == max(checkpoints))):
                links = pl.concat([loop.base_links, loop.catalog.correlations.filter(
                    pl.col("topic_id").is_in(reviewed))])
                full = loop.load(write_links(loop.work / "links" / f"full-gold-{round_}.csv", links))
                entry["full_gold"] = loop.evaluate(loop.train("full-gold", full)[0])
        rounds.append(entry)
        print(f"round {round_}: {json.dumps({k: v for k, v in entry.items() if k not in ('after', 'full_gold')})}",
              flush=True)
        if exhausted:
            print(f"fold {args.reviewed_fold} has {len(loop.reviewed)} topics: all reviewed after round {round_}")
            break
    store.close()
    return {"catalog": args.catalog, "folds": args.folds, "group_by": loop.group_by, "seed": args.seed,
            "reviewed_fold": args.reviewed_fold, "evaluated_fold": args.evaluated_fold, "top": args.top,
            "topics": {"training": len(loop.training), "reviewed": len(loop.reviewed),
                       "evaluated": len(loop.evaluated)},
            "before": before, "rounds": rounds, "minutes": round((time.perf_counter() - started) / 60, 1)}


def table(report: dict[str, Any]) -> str:
    """The learning curve as a markdown table."""
    def cells(figures: dict[str, Any]) -> str:
        return " | ".join(f"{figures[k]:.3f}" if k in figures else "-" for k in FIGURES)

    lines = ["| after | topics reviewed | decisions: accepted / rejected | mean F2 | precision | recall | MAP@25 | "
             "F2 change (se) | full gold: mean F2 |", "|---" * 9 + "|",
             f"| no feedback | 0 | - | {cells(report['before'])} | - | - |"]
    for entry in report["rounds"]:
        if "after" in entry:
            full = f"{entry['full_gold']['mean_f2']:.3f}" if "full_gold" in entry else "-"
            lines.append(f"| round {entry['round']} | {entry['reviewed_topics']} | "
                         f"{entry['accepted_so_far']} / {entry['rejected_so_far']} | {cells(entry['after'])} | "
                         f"{entry['change']['mean']:+.3f} ({entry['change']['se']:.3f}) | {full} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", choices=CATALOGS, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding the catalogs")
    parser.add_argument("--rounds", type=int, nargs="+", default=[1, 2, 4],
                        help="rounds of review after which fold E is evaluated (the last is how many run)")
    parser.add_argument("--round-topics", type=int, default=50, help="topics a round reviews")
    parser.add_argument("--top", type=int, default=10, help="items a curator sees per topic")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--reviewed-fold", type=int, default=0)
    parser.add_argument("--evaluated-fold", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--full-gold", choices=("every", "last", "none"), default="every",
                        help="at which checkpoints to train the control on the reviewed topics' complete gold")
    parser.add_argument("--work", type=Path, default=None,
                        help="rankers, links, store and mined candidates (default: artifacts/exp/curator-CATALOG)")
    parser.add_argument("--out", type=Path, required=True, help="the report (JSON)")
    args = parser.parse_args()
    args.work = args.work or Path("artifacts/exp") / f"curator-{args.catalog}"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"{report['minutes']} min; wrote {args.out}")


if __name__ == "__main__":
    main()
