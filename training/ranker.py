"""`edurank train ranker`: a LightGBM model over hybrid candidates' features, cross-fitted over topic folds.

Its own command and artifact kind rather than a mode of `train reranker`: it trains no network (seconds on a
CPU, not the shared torch loop), needs no cross-encoder, and what it depends on (retrievers, the lexical
index, the correlations as a graph) differs from the cross-encoder's.

1. Candidates: each topic's hybrid top-N (dense + lexical, retriever/hybrid.py) from a retriever that never
   trained on it, as `train reranker` picks them; cached under `<out>/.cache/` since every ablation reuses it.
2. Features (ranker/features.py): a topic's graph features read the correlations of every fold but its own,
   so no topic sees its own links, in training as in serving.
3. Cross-fitting: per fold, a booster trained on the other folds scores the fold (OOF); Platt scaling of the
   OOF scores gives probabilities, and the decision rule (threshold, cap, margin) is tuned on them; each
   fold's figure uses a rule tuned on the others.
4. The served booster is trained on every topic with the same settings and a monotone-increasing dense cosine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import torch

import edurank
from edurank.artifacts import fresh_dir, hash_json, model_ref, publish_artifact, staging_dir
from edurank.encoders import fingerprint, model_path
from edurank.options import option
from ranker.features import (
    CATEGORICAL,
    FEATURE_GROUPS,
    MONOTONE_INCREASING,
    Context,
    Graph,
    build_features,
    content_context,
    feature_names,
    query_facts,
    vocabularies,
)
from ranker.model import Ranker
from reranker.decision import DecisionRule, tune_rule
from reranker.evaluation import oof_report, topic_score_list
from reranker.model import Calibration
from retriever.catalog import Catalog
from retriever.evaluation import mean_average_precision
from retriever.hybrid import CandidateConfig, Filters, hybrid_candidates
from retriever.indexing import build_lexical, in_memory_index
from retriever.lexical import lexical_text
from retriever.model import BiEncoder
from retriever.splits import TRAIN_ONLY, topic_folds, training_topics
from retriever.texts import topic_parts
from training.reranker import assign_miners

log = logging.getLogger(__name__)
OOF = "oof.parquet"
OBJECTIVES = ("binary", "lambdarank")
MINED_FORMAT = 2  # of the cached candidates' columns; bump when mining adds or changes one


def parse_groups(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass
class RankerConfig:
    """Everything that changes the trained ranker; hashed (with the data and retrievers) to name the run."""

    candidates: CandidateConfig = option(factory=CandidateConfig)
    objective: str = option("binary", "binary: a probability per pair; lambdarank: each topic's order",
                            choices=OBJECTIVES)
    groups: tuple[str, ...] = option(tuple(FEATURE_GROUPS), f"feature groups ({', '.join(FEATURE_GROUPS)})",
                                     parse=parse_groups)
    trees: int = option(300, "boosting rounds", minimum=1)
    learning_rate: float = option(0.05, "shrinkage per round", flag="--lr")
    leaves: int = option(7, "leaves per tree", minimum=2)
    min_child_samples: int = option(50, "rows per leaf at least", minimum=1)
    folds: int = option(5, "topic folds for cross-fitting", minimum=2)
    fold: int | None = option(None, "hold this fold out entirely, for `evaluate recommend --fold`")
    group_by: str | None = option(None, "topics column whose equal values share a fold (e.g. title: a question's "
                                        "wrong answers)")
    hold_out_items: float = option(0.0, "share of each held-out fold's items no training topic may link",
                                   minimum=0)
    seed: int = option(42, "seed of folds and boosting")

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in FEATURE_GROUPS]
        if unknown or not self.groups:
            raise ValueError(f"--groups: unknown {unknown or 'none given'}; choose from {', '.join(FEATURE_GROUPS)}")

    def params(self) -> dict[str, Any]:
        names = feature_names(self.groups)
        params: dict[str, Any] = {
            "objective": self.objective, "learning_rate": self.learning_rate, "num_leaves": self.leaves,
            "min_child_samples": self.min_child_samples, "feature_fraction": 0.9, "bagging_fraction": 0.9,
            "bagging_freq": 1, "lambda_l2": 1.0, "seed": self.seed, "deterministic": True,
            "num_threads": torch.get_num_threads(), "verbose": -1,
            "monotone_constraints": [1 if n in MONOTONE_INCREASING else 0 for n in names],
            "monotone_constraints_method": "advanced"}
        if self.objective == "lambdarank":
            params["lambdarank_truncation_level"] = 32
        return params


# -- candidates and features --------------------------------------------------------------------------------

def mine_hybrid(catalog: Catalog, plan: dict[Path, list[str]], config: CandidateConfig) -> pl.DataFrame:
    """Every planned topic's hybrid candidates from its blind retriever: (topic_id, content_id, row, the
    hybrid scores, label) rows, grouped by topic."""
    lexical = build_lexical(catalog)
    ids = catalog.content["id"]
    parts = []
    for path, topic_ids in plan.items():
        log.info("hybrid candidates (%d dense + %d lexical) for %d topics with %s", config.dense, config.lexical,
                 len(topic_ids), path)
        encoder = BiEncoder.load(path)
        with torch.inference_mode():
            index = in_memory_index(encoder, catalog, lexical)
            topics = catalog.topics_in_order(topic_ids)
            vectors = encoder.encode_topics(catalog, topics)
        found = hybrid_candidates(index, vectors, [lexical_text(p) for p in topic_parts(topics)],
                                  [Filters(language=lang) for lang in topics["language"].to_list()], config,
                                  topic_ids)
        for topic, frame in zip(topic_ids, found, strict=True):
            gold = catalog.gold[topic]
            content = ids.gather(frame["row"])
            parts.append(frame.with_columns(pl.lit(topic).alias("topic_id"), content.alias("content_id"),
                                            content.is_in(list(gold)).alias("label")))
    return pl.concat(parts)


@dataclass
class CrossFit:
    """Which topics take part and, per fold, which may train while it is held out: the other folds' topics
    minus those linking one of its held-out items (`hold_out_items`)."""

    assignment: dict[str, int]
    training: dict[int, set[str]]

    @classmethod
    def of(cls, catalog: Catalog, config: RankerConfig) -> CrossFit:
        split = {"share": config.hold_out_items, "seed": config.seed}
        assignment = topic_folds(catalog, config.folds, config.seed, config.group_by)
        if config.fold is not None:  # held out for good: its topics and those linking its held-out items
            kept = set(training_topics(catalog, assignment, config.fold, **split))
            assignment = {t: f for t, f in assignment.items() if t in kept}
        folds = sorted({f for f in assignment.values() if f != TRAIN_ONLY})
        return cls(assignment, {f: set(training_topics(catalog, assignment, f, **split)) for f in folds})

    def graph(self, catalog: Catalog, fold: int | None) -> Graph:
        """The links a fold's topics may see (every taking-part topic's for None or a training-only topic)."""
        topics = self.training[fold] if fold in self.training else set(self.assignment)
        return Graph.build(catalog.correlations.filter(pl.col("topic_id").is_in(list(topics))), catalog.topics)

    def seen(self, catalog: Catalog, topics: Sequence[str]) -> dict[str, bool]:
        """Per topic, whether its gold items were all linked by topics that trained while its fold was out."""
        linked = {fold: {item for t in training for item in catalog.gold.get(t, ())}
                  for fold, training in self.training.items()}
        return {t: catalog.gold[t] <= linked.get(self.assignment[t], set()) for t in topics}


def cross_fitted_features(catalog: Catalog, candidates: pl.DataFrame, crossfit: CrossFit,
                          groups: Sequence[str]) -> pl.DataFrame:
    """Features of every candidate, each topic's graph holding only what trains while its fold is held out;
    adds `fold` and `rank` (position by dense cosine)."""
    candidates = candidates.filter(pl.col("topic_id").is_in(list(crossfit.assignment)))
    topic_ids = candidates["topic_id"].unique(maintain_order=True).to_list()
    queries = query_facts(catalog.topics_in_order(topic_ids))
    query_of = {t: i for i, t in enumerate(topic_ids)}
    context_content = content_context(catalog.content)
    vocab = vocabularies(catalog.content, catalog.topics)
    candidates = candidates.with_columns(
        pl.col("topic_id").replace_strict(query_of, return_dtype=pl.Int64).alias("query"),
        pl.col("topic_id").replace_strict(crossfit.assignment, return_dtype=pl.Int32).alias("fold"))
    parts = []
    for (fold,), part in candidates.group_by("fold", maintain_order=True):
        context = Context(context_content, crossfit.graph(catalog, fold), vocab)
        parts.append(build_features(part.drop("topic_id"), queries, context, groups))
    frame = pl.concat(parts, how="diagonal_relaxed")
    return frame.sort("query", maintain_order=True).with_columns(
        pl.col("dense_score").rank("ordinal", descending=True).over("query").cast(pl.Int32).alias("rank"))


# -- one booster --------------------------------------------------------------------------------------------

def fit_booster(config: RankerConfig, frame: pl.DataFrame) -> lgb.Booster:
    """A booster on feature rows grouped by query (lambdarank reads the groups; binary ignores them)."""
    names = feature_names(config.groups)
    frame = frame.sort("query", maintain_order=True)
    sizes = frame.group_by("query", maintain_order=True).len()["len"].to_numpy()
    dataset = lgb.Dataset(frame.select(names).cast(pl.Float64).to_numpy(), frame["label"].cast(pl.Int32).to_numpy(),
                          group=sizes if config.objective == "lambdarank" else None, feature_name=names,
                          categorical_feature=[n for n in names if n in CATEGORICAL], free_raw_data=True)
    return lgb.train(config.params(), dataset, num_boost_round=config.trees)


def raw_scores(booster: lgb.Booster, frame: pl.DataFrame, names: Sequence[str]) -> np.ndarray:
    return np.asarray(booster.predict(frame.select(names).cast(pl.Float64).to_numpy(), raw_score=True))


def cross_fit(config: RankerConfig, frame: pl.DataFrame, crossfit: CrossFit) -> pl.DataFrame:
    """Every fold's rows scored by a booster trained on what may train while it is held out (`score`: raw
    booster output)."""
    names = feature_names(config.groups)
    parts = []
    for fold, training in crossfit.training.items():
        started = time.perf_counter()
        train = frame.filter(pl.col("topic_id").is_in(list(training)))
        held_out = frame.filter(pl.col("fold") == fold)
        parts.append(held_out.with_columns(pl.Series("score", raw_scores(fit_booster(config, train), held_out, names))))
        log.info("fold %d: trained on %d rows in %.1f s", fold, len(train), time.perf_counter() - started)
    return pl.concat(parts)


# -- figures ------------------------------------------------------------------------------------------------

def candidate_recall(candidates: pl.DataFrame, gold: dict[str, set[str]], cuts: Sequence[int]) -> dict[str, float]:
    """Recall of the gold pairs among each source's top-k and among the union, over the candidates' topics."""
    total = sum(len(gold[t]) for t in candidates["topic_id"].unique().to_list())
    positives = candidates.filter(pl.col("label"))
    figures = {f"dense@{k}": positives.filter(pl.col("dense_rank") <= k).height / total for k in cuts}
    figures.update({f"lexical@{k}": positives.filter(pl.col("lexical_rank") <= k).height / total for k in cuts})
    figures["union"] = positives.height / total
    figures["candidates_per_topic"] = candidates.height / max(candidates["topic_id"].n_unique(), 1)
    return {k: round(v, 4) for k, v in figures.items()}


def seen_and_unseen(oof: pl.DataFrame, catalog: Catalog, crossfit: CrossFit) -> dict[str, Any]:
    """One-gold catalogs: MAP@25 of the ranker and of retrieval alone, apart for topics whose gold item some
    training topic linked (seen) and those whose item was new (unseen)."""
    seen = crossfit.seen(catalog, oof["topic_id"].unique().to_list())
    figures: dict[str, Any] = {}
    for name, wanted in (("seen", True), ("unseen", False)):
        part = oof.filter(pl.col("topic_id").replace_strict(seen, return_dtype=pl.Boolean) == wanted)
        if not len(part):
            continue
        topics, _, ranked = topic_score_list(part, catalog.gold)
        dense = part.filter(pl.col("dense_rank").is_not_null())
        retrieved = topic_score_list(dense, catalog.gold, "rank")[2]
        gold = [catalog.gold[t] for t in topics]
        figures[name] = {"topics": len(topics), "map@25": mean_average_precision(ranked, gold, 25),
                         "retrieval_map@25": mean_average_precision(retrieved, gold, 25)}
    return figures


def retrieval_only(oof: pl.DataFrame, gold: dict[str, set[str]]) -> dict[str, Any]:
    """The same topics with no stage 2: the dense candidates by their cosine, cut by a rule (threshold, cap,
    margin) tuned for them the same way."""
    dense = oof.filter(pl.col("dense_rank").is_not_null()).with_columns(
        pl.col("dense_score").cast(pl.Float64).alias("probability"))
    rule = tune_rule(topic_score_list(dense, gold)[1])
    return {**oof_report(dense, gold, rule)["held_out"], "rule": rule.to_dict()}


# -- the run ------------------------------------------------------------------------------------------------

def candidates_for(catalog: Catalog, retrievers: Sequence[str], out: Path, config: RankerConfig) \
        -> tuple[pl.DataFrame, CrossFit, dict[Path, list[str]]]:
    """The run's hybrid candidates, mined once per (catalog, retrievers, topics, candidate counts) and cached."""
    crossfit = CrossFit.of(catalog, config)
    plan = assign_miners(catalog, sorted(crossfit.assignment), [model_path(r) for r in retrievers])
    key = hash_json({"data": catalog.data_hash, "candidates": asdict(config.candidates), "format": MINED_FORMAT,
                     "edurank": edurank.__version__, "plan": {fingerprint(p): ids for p, ids in plan.items()}})
    cache = out / ".cache" / f"candidates-{key[:16]}.parquet"
    if cache.is_file():
        return pl.read_parquet(cache), crossfit, plan
    candidates = mine_hybrid(catalog, plan, config.candidates)
    cache.parent.mkdir(parents=True, exist_ok=True)
    candidates.write_parquet(cache.with_suffix(".tmp"))
    cache.with_suffix(".tmp").replace(cache)
    return candidates, crossfit, plan


def evaluate_ranker(catalog: Catalog, candidates: pl.DataFrame, crossfit: CrossFit,
                    config: RankerConfig) -> tuple[pl.DataFrame, Calibration, DecisionRule, dict[str, Any]]:
    """Features, cross-fitting, calibration and the tuned rule; returns the features and the figures."""
    started = time.perf_counter()
    frame = cross_fitted_features(catalog, candidates, crossfit, config.groups)
    feature_seconds = time.perf_counter() - started
    oof = cross_fit(config, frame, crossfit)
    calibration = Calibration.fit(oof["score"].to_numpy(), oof["label"].to_numpy())
    oof = oof.with_columns(pl.Series("probability", calibration(oof["score"].to_numpy())))
    rule = tune_rule(topic_score_list(oof, catalog.gold)[1])
    metrics = oof_report(oof, catalog.gold, rule)
    metrics["retrieval_only"] = retrieval_only(oof, catalog.gold)
    if all(len(catalog.gold[t]) == 1 for t in oof["topic_id"].unique()):
        metrics["by_item"] = seen_and_unseen(oof, catalog, crossfit)
        for fold, figures in metrics["folds"].items():
            figures["by_item"] = seen_and_unseen(oof.filter(pl.col("fold") == int(fold)), catalog, crossfit)
    metrics["candidate_recall"] = candidate_recall(candidates.filter(pl.col("topic_id").is_in(oof["topic_id"])),
                                                   catalog.gold, (16, 32, 64))
    metrics["seconds"] = {"features": round(feature_seconds, 2),
                          "cross_fit": round(time.perf_counter() - started - feature_seconds, 2)}
    log.info("held-out (OOF) mean F2 %.4f, retrieval only %.4f; candidate recall %s",
             metrics["held_out"]["mean_f2"], metrics["retrieval_only"]["mean_f2"], metrics["candidate_recall"])
    return frame.join(oof.select("query", "row", "score", "probability"), on=["query", "row"], how="left"), \
        calibration, rule, metrics


def train_ranker(catalog: Catalog, retrievers: Sequence[str], out: Path, config: RankerConfig) -> Path:
    """Mine, featurise, cross-fit, calibrate, tune, train the served booster; publish `<out>/<version>/`."""
    started = time.time()
    candidates, crossfit, plan = candidates_for(catalog, retrievers, out, config)
    frame, calibration, rule, metrics = evaluate_ranker(catalog, candidates, crossfit, config)
    booster = fit_booster(config, frame)
    ranker = Ranker(booster, tuple(config.groups), config.candidates, vocabularies(catalog.content, catalog.topics),
                    crossfit.graph(catalog, None), calibration, rule)
    depends = [model_ref(path, fingerprint(path)) for path in plan]
    run_hash = hash_json({"config": asdict(config), "data": catalog.data_hash, "edurank": edurank.__version__,
                          "retrievers": [asdict(d) for d in depends]})
    with staging_dir(out, f"ranker-{run_hash[:12]}") as work:
        final = fresh_dir(work / "artifact")
        ranker.save(final)
        frame.select("topic_id", "content_id", "fold", "rank", "label", "score", "probability") \
            .drop_nulls("probability").write_parquet(final / OOF)
        importance = dict(zip(booster.feature_name(), booster.feature_importance("gain").round(1).tolist(),
                              strict=True))
        return publish_artifact(
            final, out, run_hash, kind=Ranker.KIND, base_model=None,
            data={"hash": catalog.data_hash, "files": [str(p) for p in catalog.files],
                  "train_topics": candidates["topic_id"].n_unique(), "rows": len(frame),
                  "positives": int(frame["label"].sum())},
            params=asdict(config), metrics=metrics, seconds={"train": time.time() - started}, depends=depends,
            details={"calibration": asdict(calibration), "rule": rule.to_dict(), "importance": importance,
                     "topics_per_retriever": {str(p): len(ids) for p, ids in plan.items()}})
