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

Every model trains on the shared loop (a checkpoint per epoch) and every finished fold keeps its OOF logits
in the run's staging directory, so rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

import edurank
from edurank.artifacts import ModelRef, fresh_dir, hash_json, model_ref, publish_artifact, staging_dir
from edurank.encoders import fingerprint, model_path
from edurank.errors import InputError
from edurank.options import option
from reranker.decision import DecisionRule
from reranker.evaluation import calibrate_and_tune
from reranker.model import Calibration, PairFormat, Reranker
from retriever.catalog import Catalog
from retriever.evaluation import retrieve
from retriever.model import BiEncoder
from retriever.splits import TRAIN_ONLY, seen_topics, topic_folds
from retriever.texts import content_parts, topic_parts
from training.loop import (
    EngineOptions,
    Loop,
    adamw_with_warmup,
    freeze_lower_layers,
    resolve_device,
    run_fold,
    seed_everything,
)

log = logging.getLogger(__name__)
CANDIDATES = "candidates.parquet"
OOF = "oof.parquet"


@dataclass
class RerankerConfig(EngineOptions):
    """Everything that changes the trained model; hashed (with the data and retrievers) to name the run."""

    base_model: str | None = option(None, "start from this local HF/ST dir (default: bundled MiniLM)", flag="--model")
    candidates: int = option(32, "top-N retrieved per topic", minimum=1)
    negatives: int = option(8, "negatives sampled per topic and epoch from its candidates (0: all)", minimum=0)
    pos_weight: float | None = option(None, "BCE weight of positives (default: negatives / positives seen per epoch)")
    epochs: int = option(1, "epochs over the sampled pairs", minimum=1)
    batch_size: int = option(32, "pairs per batch", minimum=1)
    learning_rate: float = option(5e-5, "peak learning rate", flag="--lr")
    topic_tokens: int = option(32, "tokens of the topic side of a pair", minimum=1)
    content_tokens: int = option(64, "tokens of the content side of a pair", minimum=1)
    rank_feature: bool = option(False, "write the retrieval rank into the pair")
    freeze_layers: int = option(0, "freeze embeddings + this many lower layers", minimum=0)
    cross_fit: bool = option(True, "train fold models for OOF scores (off: faster; calibration by prior "
                                   "correction, rule untuned)")
    folds: int = option(5, "topic folds for cross-fitting", minimum=2)
    fold: int | None = option(None, "hold this fold out entirely, for `evaluate recommend --fold` "
                                    "(default: use every topic)")
    seed: int = option(42, "seed of folds, sampling and initialisation")

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


def mine_candidates(catalog: Catalog, plan: dict[Path, list[str]], top_n: int, fold_of: dict[str, int],
                    device: str = "cpu") -> pl.DataFrame:
    """(topic_id, content_id, rank, label, fold, retrieved) rows: each topic's top-N from its blind retriever
    (`plan`: retriever -> topics), plus its gold items that were not retrieved (retrieved = False, rank N + 1)."""
    rows: list[dict[str, Any]] = []
    for path, ids in plan.items():
        log.info("mining top-%d candidates for %d topics with %s", top_n, len(ids), path)
        encoder = BiEncoder.load(path, device=device)
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
    """Trains one cross-encoder on the given candidate rows; its loop checkpoints each epoch in `work_dir`."""

    def __init__(self, config: RerankerConfig, pairs: pl.DataFrame, work_dir: Path, label: str):
        self.config, self.pairs, self.work_dir, self.label = config, pairs, work_dir, label
        self.device = resolve_device(config.device)
        self.reranker = Reranker.load(config.base_model, config.pair_format)
        self.reranker.model.to(self.device)
        freeze_lower_layers(self.reranker.model.encoder, config.freeze_layers)
        positives = int(pairs["label"].sum())
        self.pos_weight = config.pos_weight or max(self.expected_negatives() / max(positives, 1), 1.0)
        self.loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(self.pos_weight, device=self.device))
        self.labels = torch.from_numpy(pairs["label"].cast(pl.Float32).to_numpy())
        self.texts = list(zip(pairs["a"].to_list(), pairs["b"].to_list(), strict=True))

    def expected_negatives(self) -> int:
        """Negatives per epoch: up to `negatives` per topic (all of them when `negatives` is 0)."""
        per_topic = self.pairs.filter(~pl.col("label")).group_by("topic_id").len()["len"]
        return int(per_topic.sum() if not self.config.negatives else per_topic.clip(0, self.config.negatives).sum())

    def batches(self, epoch: int) -> list[list[int]]:
        """Every positive, plus up to `negatives` random negatives per topic (a new draw each epoch, a function
        of the seed and the epoch), shuffled and cut into batches."""
        rng = random.Random(hash_json([self.config.seed, epoch]))
        chosen: list[int] = []
        indexed = self.pairs.with_row_index("row")
        for (_topic,), group in indexed.group_by("topic_id", maintain_order=True):
            chosen += group.filter(pl.col("label"))["row"].to_list()
            negatives = group.filter(~pl.col("label"))["row"].to_list()
            take = len(negatives) if not self.config.negatives else min(self.config.negatives, len(negatives))
            chosen += rng.sample(negatives, take)
        rng.shuffle(chosen)
        size = self.config.batch_size
        return [chosen[start:start + size] for start in range(0, len(chosen), size)]

    def step_loss(self, rows: list[int]) -> torch.Tensor:
        features = self.reranker.tokenize([self.texts[i] for i in rows])
        logits = self.reranker.model(**{k: v.to(self.device) for k, v in features.items()})
        return self.loss(logits.float(), self.labels[rows].to(self.device))

    def run(self) -> Reranker:
        config = self.config
        seed_everything(config.seed)
        steps = math.ceil((int(self.pairs["label"].sum()) + self.expected_negatives()) / config.batch_size)
        optimizer, scheduler = adamw_with_warmup(self.reranker.model.parameters(), config.learning_rate,
                                                 config.weight_decay, config.warmup_ratio, steps * config.epochs)
        loop: Loop[list[int]] = Loop(self.reranker.model, optimizer, scheduler, self.device, self.work_dir,
                                     self.label, config.mixed_precision)
        self.history = loop.fit(config.epochs, self.batches, self.step_loss).history
        self.reranker.calibration = self.prior_calibration()
        return self.reranker

    def prior_calibration(self) -> Calibration:
        """Undo what training did to the odds: `pos_weight` multiplies them by w, and seeing only a fraction r
        of the negatives by 1 / r, so the trained logit is the true one plus log(w / r)."""
        negative_rate = self.expected_negatives() / max(int((~self.pairs["label"]).sum()), 1)
        return Calibration.prior_correction(self.pos_weight / negative_rate)


# -- the run ------------------------------------------------------------------------------------------------

def train_reranker(catalog: Catalog, retrievers: Sequence[str], out: Path, config: RerankerConfig) -> Path:
    """Mine, cross-fit, calibrate, tune, train the served model; publish `<out>/<version>/`."""
    started = time.time()
    assignment = topic_folds(catalog, config.folds, config.seed)
    topics = sorted(t for t, f in assignment.items() if f != TRAIN_ONLY and f != config.fold)
    plan = assign_miners(catalog, topics, [model_path(r) for r in retrievers])
    depends = [model_ref(path, fingerprint(path)) for path in plan]
    run_hash = hash_json({"config": asdict(config), "data": catalog.data_hash, "edurank": edurank.__version__,
                          "retrievers": [{**asdict(d), "topics": len(ids)} for d, ids in zip(depends, plan.values(),
                                                                                           strict=True)]})
    with staging_dir(out, f"reranker-{run_hash[:12]}", keep_on_error=True) as work:
        if (work / CANDIDATES).is_file():
            candidates = pl.read_parquet(work / CANDIDATES)
        else:
            candidates = mine_candidates(catalog, plan, config.candidates, assignment,
                                         str(resolve_device(config.device)))
            candidates.write_parquet(work / CANDIDATES)
        log.info("%d candidate pairs for %d topics, %d positive (%d added because retrieval missed them)",
                 len(candidates), candidates["topic_id"].n_unique(), candidates["label"].sum(),
                 (~candidates["retrieved"]).sum())
        candidates = with_pair_texts(candidates, catalog, Reranker.load(config.base_model, config.pair_format))

        oof = cross_fit(config, candidates, work) if config.cross_fit else None
        calibration, rule, metrics = None, DecisionRule(), {}
        if oof is not None:
            calibration, rule, metrics, oof = calibrate_and_tune(oof, catalog.gold)
            log.info("held-out (OOF) figures: %s", {k: round(v, 4) for k, v in metrics["held_out"].items()})

        trainer = RerankerTrainer(config, candidates, work / "final", "final")
        reranker = trainer.run()
        reranker.calibration = calibration or reranker.calibration
        reranker.rule = rule
        final = fresh_dir(work / "artifact")
        reranker.save(final)
        if oof is not None:
            oof.write_parquet(final / OOF)
        return publish_artifact(
            final, out, run_hash, kind=Reranker.KIND, base_model=ModelRef(str(model_path(config.base_model)),
                                                                          fingerprint(model_path(config.base_model))),
            data={"hash": catalog.data_hash, "files": [str(p) for p in catalog.files],
                  "train_topics": candidates["topic_id"].n_unique(), "pairs": len(candidates),
                  "positives": int(candidates["label"].sum())},
            params=asdict(config), metrics={**metrics, "final_history": trainer.history},
            seconds={"train": time.time() - started}, depends=depends,
            details={"calibration": asdict(reranker.calibration), "rule": rule.to_dict(),
                     "topics_per_retriever": {str(p): len(ids) for p, ids in plan.items()}})


def cross_fit(config: RerankerConfig, candidates: pl.DataFrame, work: Path) -> pl.DataFrame | None:
    """Train one model per fold on the other folds and score the fold's retrieved candidates; return every
    fold's OOF rows with their logits (a resumed run keeps finished folds)."""
    folds = sorted(f for f in candidates["fold"].unique().to_list() if f != TRAIN_ONLY)
    if len(folds) < 2:
        log.warning("cross-fitting needs two folds with candidates, found %d: rule left untuned", len(folds))
        return None
    parts = []
    for fold in folds:
        held_out = candidates.filter((pl.col("fold") == fold) & pl.col("retrieved"))

        def train(directory: Path, fold: int = fold, held_out: pl.DataFrame = held_out) \
                -> tuple[np.ndarray, list[dict[str, Any]]]:
            trainer = RerankerTrainer(config, candidates.filter(pl.col("fold") != fold), directory, f"fold {fold}")
            reranker = trainer.run()
            return reranker.logits(list(zip(held_out["a"], held_out["b"], strict=True))), trainer.history

        logits = run_fold(work / f"fold-{fold}", f"fold {fold}", train).predictions
        parts.append(held_out.drop("a", "b").with_columns(pl.Series("logit", logits, dtype=pl.Float32)))
    return pl.concat(parts)
