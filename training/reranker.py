"""`edurank train reranker`: a cross-encoder classifier over stage 1's candidates, cross-fitted over topic
folds so that its out-of-fold probabilities can calibrate it and tune the decision rule.

1. Candidates: each topic's top-N from a retriever that never trained on that topic (chosen per fold from
   the given retrievers by their manifests), labelled by the gold correlations; gold items retrieval
   missed are added as extra positives for training only.
2. Cross-fitting: for each fold, a model trained on the other folds scores the fold's candidates (OOF).
3. Calibration: Platt scaling fitted on the OOF logits; the decision rule (threshold, cap, min one) is
   tuned for mean F2 on the OOF probabilities, and each fold's figure uses a rule tuned on the others.
4. The served model is trained on every training topic with the same recipe.

Loss: BCE with `pos_weight` on one logit. A topic can have zero, one or many relevant items, so each
pair gets its own probability (a softmax over a topic's candidates would force them to share one unit of
mass); `pos_weight` rebalances the few positives against the sampled negatives.

Every model's checkpoint (per epoch) and every fold's OOF scores live in the run's staging directory, so
rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

import edurank
from edurank.artifacts import (
    MANIFEST,
    hash_files,
    hash_json,
    new_version,
    publish,
    read_manifest,
    staging_dir,
    write_manifest,
)
from edurank.encoders import fingerprint, model_path
from edurank.errors import InputError
from reranker.decision import DecisionRule, TopicScores, tune_rule
from reranker.evaluation import recommend_metrics
from reranker.model import Calibration, PairFormat, Reranker
from retriever.catalog import Catalog
from retriever.evaluation import map_at_k, retrieve
from retriever.model import BiEncoder
from retriever.texts import content_parts, topic_parts
from training.optim import adamw_with_warmup, freeze_lower_layers, load_checkpoint, save_checkpoint, seed_everything
from training.splits import TRAIN_ONLY, seen_topics, topic_folds

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
CANDIDATES = "candidates.parquet"
OOF = "oof.parquet"


@dataclass
class RerankerConfig:
    """Everything that changes the trained model; hashed (with the data and retrievers) to name the run."""

    base_model: str | None = None
    candidates: int = 32
    negatives: int = 8
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    pos_weight: float | None = None
    topic_tokens: int = 32
    content_tokens: int = 64
    rank_feature: bool = False
    freeze_layers: int = 0
    cross_fit: bool = True
    folds: int = 5
    fold: int | None = None
    seed: int = 42

    @property
    def pair_format(self) -> PairFormat:
        return PairFormat(self.topic_tokens, self.content_tokens, self.rank_feature)


# -- candidates ---------------------------------------------------------------------------------------------

def assign_miners(catalog: Catalog, topics: Sequence[str], retrievers: Sequence[Path]) -> dict[Path, list[str]]:
    """Each topic goes to the first retriever that never saw it; a topic no retriever is blind to is dropped
    (its candidates would be easier than served ones)."""
    seen = {path: seen_topics(path, catalog) for path in retrievers}
    plan: dict[Path, list[str]] = {path: [] for path in retrievers}
    dropped = 0
    for topic in topics:
        miner = next((path for path in retrievers if topic not in seen[path]), None)
        if miner is None:
            dropped += 1
        else:
            plan[miner].append(topic)
    if dropped:
        log.warning("%d of %d topics dropped: every given retriever trained on them", dropped, len(topics))
    if not any(plan.values()):
        raise InputError("every given retriever trained on these topics, so its candidates are not what serving "
                         "sees; give retrievers that held folds out (edurank train retriever --folds K --fold I) "
                         "or the untrained base model (--retriever bundled)")
    return {path: ids for path, ids in plan.items() if ids}


def mine_candidates(catalog: Catalog, plan: dict[Path, list[str]], top_n: int, fold_of: dict[str, int]) -> pl.DataFrame:
    """(topic_id, content_id, rank, label, fold, retrieved) rows: each topic's top-N from its blind retriever
    (`plan`: retriever -> topics), plus its gold items that were not retrieved (retrieved = False, rank N + 1)."""
    rows: list[dict[str, Any]] = []
    for path, ids in plan.items():
        log.info("mining top-%d candidates for %d topics with %s", top_n, len(ids), path)
        encoder = BiEncoder.load(path)
        with torch.inference_mode():
            ranked = retrieve(encoder, catalog, ids, top_n)
        for topic, items in zip(ids, ranked, strict=True):
            gold = catalog.gold[topic]
            rows += [{"topic_id": topic, "content_id": c, "rank": r, "label": c in gold, "retrieved": True}
                     for r, c in enumerate(items, start=1)]
            rows += [{"topic_id": topic, "content_id": c, "rank": top_n + 1, "label": True, "retrieved": False}
                     for c in sorted(gold - set(items))]
    frame = pl.DataFrame(rows, schema={"topic_id": pl.String, "content_id": pl.String, "rank": pl.Int32,
                                       "label": pl.Boolean, "retrieved": pl.Boolean})
    return frame.with_columns(pl.col("topic_id").replace_strict(fold_of, return_dtype=pl.Int32).alias("fold"))


def with_pair_texts(frame: pl.DataFrame, catalog: Catalog, reranker: Reranker) -> pl.DataFrame:
    """Add the pair's two texts (columns `a`, `b`) exactly as the served pipeline writes them."""
    topics = catalog.topics.join(frame.select(pl.col("topic_id").alias("id")), on="id", how="semi")
    topic_row = {t: i for i, t in enumerate(topics["id"])}
    content_row = {c: i for i, c in enumerate(catalog.content["id"])}
    t_parts, c_parts = topic_parts(topics), content_parts(catalog.content)
    pairs = reranker.pairs([t_parts[topic_row[t]] for t in frame["topic_id"]],
                           [c_parts[content_row[c]] for c in frame["content_id"]], frame["rank"].to_list())
    return frame.with_columns(pl.Series("a", [a for a, _ in pairs]), pl.Series("b", [b for _, b in pairs]))


# -- one model ----------------------------------------------------------------------------------------------

class RerankerTrainer:
    """Trains one cross-encoder on the given candidate rows, checkpointing each epoch in `work_dir`."""

    def __init__(self, config: RerankerConfig, pairs: pl.DataFrame, work_dir: Path, label: str):
        self.config, self.pairs, self.work_dir, self.label = config, pairs, work_dir, label
        self.reranker = Reranker.load(config.base_model, config.pair_format)
        freeze_lower_layers(self.reranker.model.encoder, config.freeze_layers)
        positives = int(pairs["label"].sum())
        self.pos_weight = config.pos_weight or max(self.expected_negatives() / max(positives, 1), 1.0)
        self.loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(self.pos_weight))

    def expected_negatives(self) -> int:
        """Negatives per epoch: up to `negatives` per topic (all of them when `negatives` is 0)."""
        per_topic = self.pairs.filter(~pl.col("label")).group_by("topic_id").len()["len"]
        return int(per_topic.sum() if not self.config.negatives else per_topic.clip(0, self.config.negatives).sum())

    def epoch_rows(self, rng: random.Random) -> list[int]:
        """Every positive, plus up to `negatives` random negatives per topic (a new draw each epoch)."""
        chosen: list[int] = []
        indexed = self.pairs.with_row_index("row")
        for (_topic,), group in indexed.group_by("topic_id", maintain_order=True):
            chosen += group.filter(pl.col("label"))["row"].to_list()
            negatives = group.filter(~pl.col("label"))["row"].to_list()
            take = len(negatives) if not self.config.negatives else min(self.config.negatives, len(negatives))
            chosen += rng.sample(negatives, take)
        rng.shuffle(chosen)
        return chosen

    def run(self) -> Reranker:
        config = self.config
        seed_everything(config.seed)
        rng = random.Random(config.seed)
        steps_per_epoch = math.ceil((int(self.pairs["label"].sum()) + self.expected_negatives()) / config.batch_size)
        optimizer, scheduler = adamw_with_warmup(self.reranker.model.parameters(), config.learning_rate,
                                                 config.weight_decay, config.warmup_ratio,
                                                 steps_per_epoch * config.epochs)
        start_epoch = 0
        checkpoint = load_checkpoint(self.work_dir / CHECKPOINT)
        if checkpoint is not None:
            self.reranker.model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            rng.setstate(checkpoint["rng"])
            torch.set_rng_state(checkpoint["torch_rng"])
            start_epoch = checkpoint["epoch"]
            log.info("%s: resuming after epoch %d", self.label, start_epoch)
        texts_a, texts_b = self.pairs["a"].to_list(), self.pairs["b"].to_list()
        labels = self.pairs["label"].cast(pl.Float32).to_numpy()
        self.reranker.model.train()
        for epoch in range(start_epoch, config.epochs):
            rows = self.epoch_rows(rng)
            losses: list[float] = []
            bar = tqdm(range(0, len(rows), config.batch_size), desc=f"{self.label} epoch {epoch + 1}/{config.epochs}",
                       unit="batch")
            for start in bar:
                batch = rows[start:start + config.batch_size]
                features = self.reranker.tokenize([(texts_a[i], texts_b[i]) for i in batch])
                loss = self.loss(self.reranker.model(**features), torch.from_numpy(labels[batch]))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.reranker.model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            log.info("%s epoch %d: loss %.4f over %d pairs", self.label, epoch + 1, np.mean(losses), len(rows))
            save_checkpoint(self.work_dir / CHECKPOINT, {
                "epoch": epoch + 1, "model": self.reranker.model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng.getstate(), "torch_rng": torch.get_rng_state()})
        self.reranker.model.eval()
        self.reranker.calibration = self.prior_calibration()
        return self.reranker

    def prior_calibration(self) -> Calibration:
        """Undo what training did to the odds: `pos_weight` multiplies them by w, and seeing only a fraction r
        of the negatives by 1 / r, so the trained logit is the true one plus log(w / r)."""
        negative_rate = self.expected_negatives() / max(int((~self.pairs["label"]).sum()), 1)
        return Calibration.prior_correction(self.pos_weight / negative_rate)


# -- the run ------------------------------------------------------------------------------------------------

def topic_score_list(oof: pl.DataFrame, gold: dict[str, set[str]], column: str = "probability") -> \
        tuple[list[str], list[TopicScores], list[list[str]]]:
    """Per topic of an OOF frame: its TopicScores and its candidates in descending `column` order."""
    topics, scores, ranked = [], [], []
    for (topic,), group in oof.sort(["topic_id", "rank"]).group_by("topic_id", maintain_order=True):
        group = group.sort(column, descending=column != "rank", maintain_order=True)
        values = group[column].to_numpy().astype(np.float64)
        topics.append(str(topic))
        scores.append(TopicScores.sorted(-values if column == "rank" else values, group["label"].to_list(),
                                         len(gold[str(topic)])))
        ranked.append(group["content_id"].to_list())
    return topics, scores, ranked


def oof_report(oof: pl.DataFrame, gold: dict[str, set[str]], rule: DecisionRule) -> dict[str, Any]:
    """Held-out figures per fold, each with a rule tuned on the other folds' OOF (so no fold's figure was
    tuned on itself), their topic-weighted mean, and MAP@25 of retrieval alone against reranked."""
    report: dict[str, Any] = {"folds": {}}
    folds = sorted(oof["fold"].unique().to_list())
    weighted: dict[str, float] = {}
    for fold in folds:
        fold_rule = tune_rule(topic_score_list(oof.filter(pl.col("fold") != fold), gold)[1]) \
            if len(folds) > 1 else rule
        own = oof.filter(pl.col("fold") == fold)
        topics, scores, ranked = topic_score_list(own, gold)
        fold_gold = [gold[t] for t in topics]
        figures = recommend_metrics(scores, fold_rule, ranked, fold_gold)
        if "map@25" in figures:
            figures["retrieval_map@25"] = map_at_k(topic_score_list(own, gold, "rank")[2], fold_gold, 25)
        report["folds"][str(fold)] = figures
        for key, value in figures.items():
            if isinstance(value, float):
                weighted[key] = weighted.get(key, 0.0) + value * figures["topics"]
    total = sum(f["topics"] for f in report["folds"].values())
    report["held_out"] = {"topics": total, **{key: value / total for key, value in weighted.items()}}
    topics, scores, ranked = topic_score_list(oof, gold)
    report["in_sample_rule"] = recommend_metrics(scores, rule, ranked, [gold[t] for t in topics])
    return report


def calibrate_and_tune(oof: pl.DataFrame, gold: dict[str, set[str]]) -> \
        tuple[Calibration, DecisionRule, dict[str, Any], pl.DataFrame]:
    """Fit Platt scaling on the OOF logits, with and without the retrieval rank as a second feature, tune
    the rule on each, and keep whichever gives the higher held-out (other-folds-tuned) mean F2."""
    logits, labels, ranks = oof["logit"].to_numpy(), oof["label"].to_numpy(), oof["rank"].to_numpy()
    options = {}
    for name, calibration in (("logit", Calibration.fit(logits, labels)),
                              ("logit+rank", Calibration.fit(logits, labels, ranks))):
        scored = oof.with_columns(pl.Series("probability", calibration(logits, ranks)))
        rule = tune_rule(topic_score_list(scored, gold)[1])
        options[name] = (calibration, rule, oof_report(scored, gold, rule), scored)
    chosen = max(options, key=lambda name: options[name][2]["held_out"]["mean_f2"])
    calibration, rule, metrics, scored = options[chosen]
    # the same pipeline without the reranker: rank alone, calibrated and cut by its own tuned rule
    log_rank = -np.log(ranks.astype(np.float64))
    by_rank = oof.with_columns(pl.Series("probability", Calibration.fit(log_rank, labels)(log_rank)))
    metrics["retrieval_only"] = oof_report(by_rank, gold, tune_rule(topic_score_list(by_rank, gold)[1]))["held_out"]
    metrics["calibration_options"] = {name: {"held_out_mean_f2": option[2]["held_out"]["mean_f2"],
                                             "calibration": asdict(option[0])} for name, option in options.items()}
    metrics["calibration_chosen"] = chosen
    log.info("calibration %s chosen: %s", chosen, {k: round(v["held_out_mean_f2"], 4)
                                                   for k, v in metrics["calibration_options"].items()})
    return calibration, rule, metrics, scored


def score_fold(reranker: Reranker, rows: pl.DataFrame) -> pl.DataFrame:
    """Logits for a fold's retrieved candidates (what serving would rerank)."""
    retrieved = rows.filter(pl.col("retrieved"))
    logits = reranker.logits(list(zip(retrieved["a"], retrieved["b"], strict=True)))
    return retrieved.drop("a", "b").with_columns(pl.Series("logit", logits, dtype=pl.Float32))


def train_reranker(catalog: Catalog, retrievers: Sequence[str], out: Path, config: RerankerConfig) -> Path:
    """Mine, cross-fit, calibrate, tune, train the served model; publish `<out>/<version>/`."""
    started = time.time()
    assignment = topic_folds(catalog, config.folds, config.seed)
    topics = sorted(t for t, f in assignment.items() if f != TRAIN_ONLY and f != config.fold)
    plan = assign_miners(catalog, topics, [model_path(r) for r in retrievers])
    depends = [{"path": str(p), "version": read_manifest(p).get("version") if (p / MANIFEST).is_file() else None,
                "fingerprint": fingerprint(p), "topics": len(ids)} for p, ids in plan.items()]
    run_hash = hash_json({"config": asdict(config), "data": catalog.data_hash, "retrievers": depends,
                          "edurank": edurank.__version__})
    with staging_dir(out, f"run-{run_hash[:12]}", keep_on_error=True) as work:
        if (work / CANDIDATES).is_file():
            candidates = pl.read_parquet(work / CANDIDATES)
        else:
            candidates = mine_candidates(catalog, plan, config.candidates, assignment)
            candidates.write_parquet(work / CANDIDATES)
        log.info("%d candidate pairs for %d topics, %d positive (%d added because retrieval missed them)",
                 len(candidates), candidates["topic_id"].n_unique(), candidates["label"].sum(),
                 (~candidates["retrieved"]).sum())
        candidates = with_pair_texts(candidates, catalog, Reranker.load(config.base_model, config.pair_format))

        oof = cross_fit(config, candidates, work) if config.cross_fit else None
        if oof is not None:
            calibration, rule, metrics, oof = calibrate_and_tune(oof, catalog.gold)
            oof.write_parquet(work / OOF)
            log.info("held-out (OOF) figures: %s", {k: round(v, 4) for k, v in metrics["held_out"].items()})
        else:
            calibration, rule, metrics = None, DecisionRule(), {}

        final_dir = work / "final"
        final_dir.mkdir(exist_ok=True)
        reranker = RerankerTrainer(config, candidates, final_dir, "final").run()
        reranker.calibration = calibration or reranker.calibration
        reranker.rule = rule
        reranker.save(work)
        shutil.rmtree(final_dir)
        (work / CANDIDATES).unlink()
        version = new_version(run_hash)
        write_manifest(work, {
            "kind": "reranker", "version": version, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "edurank": edurank.__version__, "fingerprint": hash_files(sorted(work.glob("*.safetensors"))),
            "base_model": str(model_path(config.base_model)), "retrievers": depends,
            "data": {"catalog_hash": catalog.data_hash, "files": [str(p) for p in catalog.files],
                     "train_topics": candidates["topic_id"].n_unique(),
                     "pairs": len(candidates), "positives": int(candidates["label"].sum())},
            "params": asdict(config), "calibration": asdict(reranker.calibration), "rule": rule.to_dict(),
            "metrics": metrics, "train_seconds": round(time.time() - started, 1),
        })
        return publish(work, out, version)


def cross_fit(config: RerankerConfig, candidates: pl.DataFrame, work: Path) -> pl.DataFrame | None:
    """Train one model per fold on the other folds and score the fold; return every fold's OOF rows (kept
    in the staging dir: a resumed run skips finished folds, and all of them once the OOF file exists)."""
    if (work / OOF).is_file():
        return pl.read_parquet(work / OOF).select(pl.exclude("probability"))
    folds = sorted(f for f in candidates["fold"].unique().to_list() if f != TRAIN_ONLY)
    if len(folds) < 2:
        log.warning("cross-fitting needs two folds with candidates, found %d: rule left untuned", len(folds))
        return None
    parts = []
    for fold in folds:
        fold_dir = work / f"fold-{fold}"
        fold_dir.mkdir(exist_ok=True)
        if not (fold_dir / OOF).is_file():
            trainer = RerankerTrainer(config, candidates.filter(pl.col("fold") != fold), fold_dir, f"fold {fold}")
            reranker = trainer.run()
            score_fold(reranker, candidates.filter(pl.col("fold") == fold)).write_parquet(fold_dir / OOF)
            (fold_dir / CHECKPOINT).unlink(missing_ok=True)
        parts.append(pl.read_parquet(fold_dir / OOF))
    oof = pl.concat(parts)
    oof.write_parquet(work / OOF)
    for fold in folds:
        shutil.rmtree(work / f"fold-{fold}")
    return oof
