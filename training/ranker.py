"""`edurank train ranker`: a LightGBM model over hybrid candidates' features, cross-fitted over topic folds.

Its own command and artifact kind rather than a mode of `train reranker`: it trains no network (seconds on a
CPU, not the shared torch loop), needs no cross-encoder (it can read one's out-of-fold logits: the cross
group), and what it depends on (retrievers, the lexical
index, the correlations as a graph) differs from the cross-encoder's.

1. Candidates: each topic's hybrid top-N (dense + lexical, retriever/hybrid.py) from a retriever that never
   trained on it, as `train reranker` picks them; cached under `<out>/.cache/` since every ablation reuses it.
2. Features (reranker/lightgbm/features.py): a topic's graph features read the correlations of every fold but its own,
   so no topic sees its own links, in training as in serving.
3. Cross-fitting: per fold, a booster trained on the other folds scores the fold (OOF); Platt scaling of the
   OOF scores gives probabilities, and the decision rule (threshold, cap, margin) is tuned on them; each
   fold's figure uses a rule tuned on the others.
4. The served booster is trained on every topic with the same settings and a monotone-increasing dense cosine.
5. `--feedback`: a curator's accepted pairs join the links and rejected ones leave them before all of this
   (training/candidates.py `with_feedback`), so decisions train like the catalog's own links; the version
   publishes like any other, and a service watching the root hot-swaps it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

import edurank
from edurank.artifacts import (
    ModelRef,
    fresh_dir,
    hash_json,
    model_ref,
    open_artifact,
    publish_artifact,
    staging_dir,
)
from edurank.encoders import fingerprint, model_path, portable_name
from edurank.errors import InputError
from edurank.reranker.calibration import Calibration
from edurank.reranker.cross_encoder.model import Reranker
from edurank.reranker.decision import DecisionRule, tune_rule
from edurank.reranker.evaluation import oof_report, topic_score_list
from edurank.reranker.lightgbm.features import (
    CATEGORICAL,
    Context,
    build_features,
    content_context,
    feature_names,
    query_facts,
    vocabularies,
)
from edurank.reranker.lightgbm.model import Ranker
from edurank.retriever.catalog import Catalog
from edurank.retriever.evaluation import mean_average_precision
from edurank.retriever.topic_folds import seen_topics
from edurank.training.candidates import (
    CrossFit,
    Mined,
    candidates_for,
    mined_for,
    model_vectors,
    ranked_rows,
    with_feedback,
)
from edurank.training.config import RankerConfig

log = logging.getLogger(__name__)
OOF = "oof.parquet"


# -- candidates and features --------------------------------------------------------------------------------

def cross_fitted_features(catalog: Catalog, mined: Mined, groups: Sequence[str]) -> pl.DataFrame:
    """Features of every mined candidate, each topic's graph (and the links its neighbours show) holding only
    what trains while its fold is held out; adds `fold` and `rank` (position by dense cosine)."""
    crossfit = mined.crossfit
    candidates = ranked_rows(mined.candidates, crossfit)
    topic_ids = candidates["topic_id"].unique(maintain_order=True).to_list()
    queries = query_facts(catalog.topics_in_order(topic_ids))
    as_query = pl.col("topic_id").replace_strict({t: i for i, t in enumerate(topic_ids)}, return_dtype=pl.Int64) \
        .alias("query")
    neighbours = None if mined.neighbours is None else mined.neighbours.filter(pl.col("topic_id").is_in(topic_ids)) \
        .select(as_query, "neighbour", "neighbour_score")
    context_content = content_context(catalog.content)
    vocab = vocabularies(catalog.content, catalog.topics)
    candidates = candidates.with_columns(as_query)
    item_vectors, part_vectors = mined.item_vectors(topic_ids), mined.part_vectors(topic_ids)
    for group, missing in (("neighbour_items", item_vectors is None or neighbours is None),
                           ("topic_parts", part_vectors is None)):
        if group in groups and missing:  # all-null columns here would meet real values at serving
            raise ValueError(f"the {group} group needs candidates_for(..., item_vectors/parts/neighbours=True)")
    parts = []
    for (fold,), part in candidates.group_by("fold", maintain_order=True):
        context = Context(context_content, crossfit.graph(catalog, fold), vocab, neighbours, item_vectors,
                          part_vectors)
        parts.append(build_features(part.drop("topic_id"), queries, context, groups))
    return pl.concat(parts, how="diagonal_relaxed").sort("query", maintain_order=True)


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

def evaluate_ranker(catalog: Catalog, mined: Mined,
                    config: RankerConfig) -> tuple[pl.DataFrame, Calibration, DecisionRule, dict[str, Any]]:
    """Features, cross-fitting, calibration and the tuned rule; returns the features and the figures."""
    started = time.perf_counter()
    candidates, crossfit = mined.candidates, mined.crossfit
    frame = cross_fitted_features(catalog, mined, config.groups)
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


def with_cross_logits(candidates: pl.DataFrame, config: RankerConfig, depends: Sequence[ModelRef],
                      catalog_hash: str) -> tuple[pl.DataFrame, ModelRef | None]:
    """The candidates with the cross-encoder's out-of-fold logit (`cross_logit`), when the config names one;
    refused unless it was cross-fitted on the same candidates, folds and retrievers (else its logits would not
    be out-of-fold for these rows). Rows it did not score (training-only topics) get a null logit."""
    if config.cross_encoder is None:
        return candidates, None
    path, manifest = open_artifact(config.cross_encoder, Reranker.KIND)
    if manifest.details.get("cross_fit") != config.cross_fit_params() or \
            sorted(d.fingerprint for d in manifest.depends) != sorted(d.fingerprint for d in depends) or \
            manifest.data.get("hash") != catalog_hash:
        raise InputError(f"--cross-encoder {config.cross_encoder}: it was not cross-fitted on these candidates "
                         "(train it on this catalog with the same --retriever, candidate counts, folds and seed)")
    if not (path / OOF).is_file() or manifest.params.get("train_folds") is not None:
        raise InputError(f"--cross-encoder {config.cross_encoder}: it has no out-of-fold logits for every fold "
                         "(trained with --no-cross-fit or --train-folds)")
    logits = pl.read_parquet(path / OOF).select("topic_id", "content_id", pl.col("logit").alias("cross_logit"))
    return candidates.join(logits, on=["topic_id", "content_id"], how="left"), \
        model_ref(path, manifest.weights)


def with_companion(mined: Mined, catalog: Catalog, model: str | None, cache: Path) -> tuple[Mined, ModelRef | None]:
    """The mined candidates with the companion encoder's cosine (`companion_score`), when the config names
    one; refused when that encoder trained on any of the topics (their cosine would not be what serving sees
    for new topics). The catalog's topic and content vectors are embedded once and cached."""
    if model is None:
        return mined, None
    path = model_path(model)
    seen = seen_topics(path, catalog) & set(mined.crossfit.assignment)
    if seen:
        raise InputError(f"--companion {model}: it trained on {len(seen)} of these topics; give the bundled model "
                         "or one that never saw this catalog's links")
    ref = replace(model_ref(path, fingerprint(path)), path=portable_name(path))
    vectors = model_vectors(catalog, path, cache)
    topics, content = vectors["topics"], vectors["content"]
    position = {t: i for i, t in enumerate(catalog.topics["id"])}
    pairs = mined.candidates
    topic_rows = pairs["topic_id"].replace_strict(position, return_dtype=pl.Int64).to_numpy()
    cosine = np.einsum("ij,ij->i", topics[topic_rows], content[pairs["row"].to_numpy()])
    return replace(mined, candidates=pairs.with_columns(pl.Series("companion_score", cosine, dtype=pl.Float32))), ref


def train_ranker(catalog: Catalog, retrievers: Sequence[str], out: Path, config: RankerConfig) -> Path:
    """Mine, featurise, cross-fit, calibrate, tune, train the served booster; publish `<out>/<version>/`.
    With `config.feedback`, a curator's decisions change the catalog's links first (`with_feedback`); the
    folds are still cut from the catalog's own links."""
    started = time.time()
    if config.companion is not None:
        model_path(config.companion)  # a wrong path fails now, not after minutes of mining
    cut, feedback = None, None
    if config.feedback is not None:
        cut = catalog
        catalog, feedback = with_feedback(catalog, config.feedback)
    mined = candidates_for(catalog, retrievers, out, config, cut=cut, **mined_for(config.groups))
    crossfit, plan = mined.crossfit, mined.plan
    depends = [model_ref(path, fingerprint(path)) for path in plan]
    candidates, cross_encoder = with_cross_logits(mined.candidates, config, depends, catalog.data_hash)
    mined, companion = with_companion(replace(mined, candidates=candidates), catalog, config.companion,
                                      out / ".cache")
    frame, calibration, rule, metrics = evaluate_ranker(catalog, mined, config)
    booster = fit_booster(config, frame)
    ranker = Ranker(booster, tuple(config.groups), config.candidates, vocabularies(catalog.content, catalog.topics),
                    crossfit.graph(catalog, None), calibration, rule,
                    cross_encoder=cross_encoder.fingerprint if cross_encoder else None,
                    companion=companion.fingerprint if companion else None)
    depends += [ref for ref in (cross_encoder, companion) if ref is not None]
    run_hash = hash_json({"config": asdict(config), "data": catalog.data_hash, "edurank": edurank.__version__,
                          "retrievers": [asdict(d) for d in depends],
                          "feedback": feedback.summary["hash"] if feedback else None})
    data: dict[str, Any] = {"hash": catalog.data_hash, "files": [str(p) for p in catalog.files],
                            "train_topics": candidates["topic_id"].n_unique(), "rows": len(frame),
                            "positives": int(frame["label"].sum())}
    if feedback is not None:
        data["feedback"] = {**feedback.summary, **feedback.outside(candidates)}
    with staging_dir(out, f"ranker-{run_hash[:12]}") as work:
        final = fresh_dir(work / "artifact")
        ranker.save(final)
        frame.select("topic_id", "content_id", "fold", "rank", "label", "score", "probability") \
            .drop_nulls("probability").write_parquet(final / OOF)
        importance = dict(zip(booster.feature_name(), booster.feature_importance("gain").round(1).tolist(),
                              strict=True))
        return publish_artifact(
            final, out, run_hash, kind=Ranker.KIND, base_model=None, data=data, params=asdict(config),
            metrics=metrics, seconds={"train": time.time() - started}, depends=depends,
            details={"calibration": asdict(calibration), "rule": rule.to_dict(), "importance": importance,
                     "topics_per_retriever": {str(p): len(ids) for p, ids in plan.items()}})
