"""`edurank train reranker`: a cross-encoder over the hybrid candidates, cross-fitted over the same folds and
rows as `edurank train ranker`, so its out-of-fold logits can also serve as one of the ranker's features.

1. Candidates and folds: training/candidates.py (each topic's hybrid top-N from a retriever that never
   trained on it). A model trains on each topic's positives and its `hard_negatives` most similar negatives.
2. Start: every model starts from `--model` or, with `--init miners`, each fold's model from the fold
   retriever that mined (and so never saw) its held-out fold (`--model` then names the served retriever).
   `--late-interaction`: the frozen layers read each text alone, as the retriever does. `--layers N` keeps
   only the start model's lower N layers: a smaller cross-encoder, N/6 of MiniLM's compute per pair.
3. Frozen trunk: the embeddings and the lower `freeze_layers` layers never change, so their output for every
   training pair is computed once and cached (training/trunk_cache.py); each step runs the layers above.
4. Loss: `bce` (a probability per pair, `pos_weight` against the sampled negatives) or `listwise` (each
   positive against `negatives` of its topic's hard negatives, softmax cross-entropy over the group).
5. Cross-fitting: per fold, a model trained on the topics that may train while it is held out scores all the
   fold's candidates (OOF). Platt scaling is fitted on the OOF logits, the decision rule is tuned on them,
   and each fold's figure uses a rule tuned on the others. The served model trains on every topic.

Every model trains on the shared loop (a checkpoint per epoch) and every finished fold keeps its OOF logits in
the run's staging directory, so rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

import edurank
from edurank.artifacts import ModelRef, fresh_dir, hash_json, model_ref, publish_artifact, staging_dir
from edurank.encoders import fingerprint, model_path
from edurank.errors import InputError
from edurank.layers import Trunk, keep_lower_layers
from edurank.reranker.calibration import Calibration
from edurank.reranker.cross_encoder.model import Reranker
from edurank.reranker.decision import DecisionRule
from edurank.reranker.evaluation import calibrate_and_tune
from edurank.retriever.catalog import Catalog
from edurank.retriever.texts import content_parts, topic_parts
from edurank.retriever.topic_folds import seen_topics
from edurank.training.candidates import CrossFit, candidates_for, ranked_rows
from edurank.training.config import RerankerConfig
from edurank.training.loop import (
    Loop,
    adamw_with_warmup,
    freeze_lower_layers,
    resolve_device,
    run_fold,
    seed_everything,
)
from edurank.training.trunk_cache import TrunkCache

log = logging.getLogger(__name__)
OOF = "oof.parquet"
CACHE_FORMAT = 1  # of the cached pair states; bump when what the trunk computes changes
Groups = list[list[int]]  # a batch: groups of rows (listwise: the positive first, then its negatives)


# -- rows ---------------------------------------------------------------------------------------------------

def training_rows(rows: pl.DataFrame, hard_negatives: int) -> pl.DataFrame:
    """What a model may train on: every positive and each topic's `hard_negatives` best-ranked negatives."""
    negative_rank = pl.col("rank").rank("ordinal").over(["topic_id", "label"])
    return rows.filter(pl.col("label") | (negative_rank <= hard_negatives) if hard_negatives else pl.lit(True))


def with_pair_texts(rows: pl.DataFrame, catalog: Catalog, reranker: Reranker) -> list[tuple[str, str]]:
    """The rows' (topic, content) texts exactly as the served pipeline writes them."""
    topics = catalog.topics_in_order(rows["topic_id"].unique(maintain_order=True).to_list())
    topic_row = {t: i for i, t in enumerate(topics["id"])}
    content_row = {c: i for i, c in enumerate(catalog.content["id"])}
    t_parts, c_parts = topic_parts(topics), content_parts(catalog.content)
    return reranker.pairs([t_parts[topic_row[t]] for t in rows["topic_id"]],
                          [c_parts[content_row[c]] for c in rows["content_id"]], rows["rank"].to_list())


# -- one model ----------------------------------------------------------------------------------------------

class RerankerTrainer:
    """Trains one cross-encoder from `init` on the given rows; its loop checkpoints each epoch in `work_dir`."""

    def __init__(self, config: RerankerConfig, rows: pl.DataFrame, texts: Sequence[tuple[str, str]],
                 init: str | Path | None, work_dir: Path, label: str, cache_dir: Path | None = None):
        self.config, self.rows, self.texts, self.work_dir, self.label = config, rows, texts, work_dir, label
        self.device = resolve_device(config.device)
        self.reranker = Reranker.load(init, config.pair_format)
        if config.layers is not None:
            keep_lower_layers(self.reranker.model.encoder, config.layers)
        self.reranker.model.to(self.device)
        self.split = config.freeze_layers
        if config.late_interaction:
            self.reranker.model.isolated_layers = self.split
        freeze_lower_layers(self.reranker.model.encoder, self.split)
        self.cache = self.trunk_cache(cache_dir) if self.split and cache_dir is not None else None
        self.labels = torch.tensor(rows["label"].cast(pl.Float32).to_list())
        by_topic = rows.select("topic_id", "label").with_row_index("at").group_by("topic_id", maintain_order=True)
        self.topics = [(g.filter(pl.col("label"))["at"].to_list(), g.filter(~pl.col("label"))["at"].to_list())
                       for _, g in by_topic]
        positives = int(rows["label"].sum())
        self.pos_weight = config.pos_weight or max(self.negatives_per_epoch() / max(positives, 1), 1.0)
        self.bce = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(self.pos_weight, device=self.device))

    def trunk_cache(self, cache_dir: Path) -> TrunkCache:
        """The frozen trunk's output for every row, keyed by the start model, the split, the format and rows."""
        isolated = self.reranker.model.isolated_layers
        if isolated not in (0, self.split):
            raise InputError(f"--freeze-layers {self.split}: the start model reads its lower {isolated} layers one "
                             "text at a time; freeze exactly those")
        key = hash_json({"model": self.reranker.fingerprint, "split": self.split,
                         **({"isolated": isolated} if isolated else {}),
                         "format": asdict(self.config.pair_format), "texts": self.texts})
        trunk, model = Trunk(self.reranker.model.encoder, self.split), self.reranker.model

        def lower(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            return trunk(input_ids, model.layer_mask(0, attention_mask, token_type_ids), token_type_ids)

        return TrunkCache.build(lower, self.reranker.model.encoder.config.hidden_size, self.reranker.tokenizer,
                                self.texts, self.config.pair_format.max_length, cache_dir / f"pairs-{key[:16]}.npy",
                                self.device)

    def negatives_per_epoch(self) -> int:
        take = self.config.negatives
        if self.config.loss == "listwise":
            return sum(len(pos) * (min(take, len(neg)) if take else len(neg)) for pos, neg in self.topics)
        return sum(min(take, len(neg)) if take else len(neg) for _, neg in self.topics)

    def batches(self, epoch: int) -> list[Groups]:
        """bce: every positive and up to `negatives` of its topic's negatives, shuffled into batches of
        `batch_size` pairs; listwise: one group per positive (it and up to `negatives` of its topic's
        negatives), whole groups per batch. A new draw each epoch, a function of the seed and epoch alone."""
        rng = random.Random(hash_json([self.config.seed, epoch]))
        take = self.config.negatives

        def draw(negatives: list[int]) -> list[int]:
            return rng.sample(negatives, min(take, len(negatives))) if take else list(negatives)

        if self.config.loss == "listwise":
            groups = [[p, *draw(neg)] for pos, neg in self.topics for p in pos if neg]
            rng.shuffle(groups)
            per_batch = max(1, self.config.batch_size // (take + 1 if take else 16))
            return [groups[i:i + per_batch] for i in range(0, len(groups), per_batch)]
        chosen = [row for pos, neg in self.topics for row in [*pos, *draw(neg)]]
        rng.shuffle(chosen)
        size = self.config.batch_size
        return [[chosen[i:i + size]] for i in range(0, len(chosen), size)]

    def logits(self, rows: list[int]) -> torch.Tensor:
        model = self.reranker.model
        if self.cache is not None:
            hidden, mask = self.cache.batch(rows)
            types = self.cache.segments(rows)
            return model.from_layer(self.split, hidden.to(self.device), mask.to(self.device), types.to(self.device))
        features = self.reranker.tokenize([self.texts[i] for i in rows])
        return model(**{k: v.to(self.device) for k, v in features.items()})

    def step_loss(self, groups: Groups) -> torch.Tensor:
        rows = [row for group in groups for row in group]
        logits = self.logits(rows).float()
        if self.config.loss == "bce":
            return self.bce(logits, self.labels[rows].to(self.device))
        losses, start = [], 0
        for group in groups:  # the positive sits first in its group
            losses.append(-torch.log_softmax(logits[start:start + len(group)], dim=0)[0])
            start += len(group)
        return torch.stack(losses).mean()

    def run(self) -> Reranker:
        config = self.config
        seed_everything(config.seed)
        steps = len(self.batches(0))
        optimizer, scheduler = adamw_with_warmup(
            [p for p in self.reranker.model.parameters() if p.requires_grad], config.learning_rate,
            config.weight_decay, config.warmup_ratio, steps * config.epochs)
        loop: Loop[Groups] = Loop(self.reranker.model, optimizer, scheduler, self.device, self.work_dir, self.label,
                                  config.mixed_precision)
        self.history = loop.fit(config.epochs, self.batches, self.step_loss).history
        self.reranker.calibration = self.prior_calibration()
        return self.reranker

    def prior_calibration(self) -> Calibration:
        """BCE: undo what training did to the odds: `pos_weight` multiplies them by w, and seeing only a
        fraction r of the negatives by 1 / r, so the trained logit is the true one plus log(w / r). A listwise
        logit has no such meaning: identity, until fitted on OOF logits."""
        if self.config.loss == "listwise":
            return Calibration()
        negative_rate = self.negatives_per_epoch() / max(int((~self.rows["label"]).sum()), 1)
        return Calibration.prior_correction(self.pos_weight / negative_rate)


# -- the run ------------------------------------------------------------------------------------------------

def fold_inits(config: RerankerConfig, catalog: Catalog, crossfit: CrossFit,
               plan: dict[Path, list[str]]) -> dict[int, Path | None]:
    """Where each fold's model starts: `--model`, or (init miners) a mining retriever blind to the whole fold."""
    folds = sorted(crossfit.training)
    if config.init == "model":
        return {fold: model_path(config.base_model) for fold in folds}
    inits: dict[int, Path | None] = {}
    for fold in folds:
        topics = {t for t, f in crossfit.assignment.items() if f == fold}
        blind = [path for path in plan if not topics & seen_topics(path, catalog)]
        if not blind:
            raise InputError(f"--init miners: no given retriever held out all of fold {fold}; train fold retrievers "
                             f"with the same --folds {config.folds} --seed {config.seed}, or use --init model")
        inits[fold] = max(blind, key=lambda path: len(set(plan[path]) & topics))
    return inits


def train_reranker(catalog: Catalog, retrievers: Sequence[str], out: Path, config: RerankerConfig) -> Path:
    """Mine, cross-fit, calibrate, tune, train the served model; publish `<out>/<version>/`."""
    started = time.time()
    if config.init == "miners" and config.base_model is None:
        raise InputError("--init miners: give --model the served retriever, so the served cross-encoder starts as "
                         "the fold models did (their out-of-fold logits tune its calibration and rule)")
    if config.late_interaction and not config.freeze_layers:
        raise InputError("--late-interaction: the within-text layers are the frozen ones; give --freeze-layers K > 0")
    if config.layers is not None and config.freeze_layers >= config.layers:
        raise InputError(f"--freeze-layers {config.freeze_layers} with --layers {config.layers}: keep at least one "
                         "trainable layer")
    mined = candidates_for(catalog, retrievers, out, config)
    crossfit, plan = mined.crossfit, mined.plan
    rows = ranked_rows(mined.candidates, crossfit)
    depends = [model_ref(path, fingerprint(path)) for path in plan]
    base = model_path(config.base_model)
    inits = fold_inits(config, catalog, crossfit, plan)
    run_hash = hash_json({"config": asdict(config), "data": catalog.data_hash, "edurank": edurank.__version__,
                          "retrievers": [{**asdict(d), "topics": len(ids)} for d, ids in zip(depends, plan.values(),
                                                                                           strict=True)],
                          "starts": sorted({fingerprint(p) for p in {base, *inits.values()} if p is not None})})
    train_rows = training_rows(rows, config.hard_negatives)
    log.info("%d candidate rows for %d topics, %d positive; %d may train", len(rows), rows["topic_id"].n_unique(),
             rows["label"].sum(), len(train_rows))
    with staging_dir(out, f"reranker-{run_hash[:12]}", keep_on_error=True) as work:
        oof = cross_fit(config, catalog, rows, crossfit, inits, work, out / ".cache") if config.cross_fit else None
        calibration, rule, metrics = None, DecisionRule(), {}
        if oof is not None:
            calibration, rule, metrics, oof = calibrate_and_tune(oof, catalog.gold)
            log.info("held-out (OOF) figures: %s", {k: round(v, 4) for k, v in metrics["held_out"].items()})

        texts = with_pair_texts(train_rows, catalog, Reranker.load(base, config.pair_format))
        trainer = RerankerTrainer(config, train_rows, texts, base, work / "final", "final", out / ".cache")
        reranker = trainer.run()
        reranker.calibration = calibration or reranker.calibration
        reranker.rule = rule
        final = fresh_dir(work / "artifact")
        reranker.save(final)
        if oof is not None:
            oof.write_parquet(final / OOF)
        return publish_artifact(
            final, out, run_hash, kind=Reranker.KIND, base_model=ModelRef(str(base), fingerprint(base)),
            data={"hash": catalog.data_hash, "files": [str(p) for p in catalog.files],
                  "train_topics": train_rows["topic_id"].n_unique(), "pairs": len(train_rows),
                  "positives": int(train_rows["label"].sum())},
            params=asdict(config), metrics={**metrics, "final_history": trainer.history},
            seconds={"train": time.time() - started}, depends=depends,
            details={"calibration": asdict(reranker.calibration), "rule": rule.to_dict(),
                     "cross_fit": config.cross_fit_params(),
                     "topics_per_retriever": {str(p): len(ids) for p, ids in plan.items()}})


def cross_fit(config: RerankerConfig, catalog: Catalog, rows: pl.DataFrame, crossfit: CrossFit,
              inits: dict[int, Path | None], work: Path, cache_dir: Path) -> pl.DataFrame | None:
    """Per fold, a model trained on what may train while it is held out scores all the fold's candidates;
    returns every fold's rows with their `logit` (a resumed run keeps finished folds)."""
    folds = sorted(crossfit.training)[:config.train_folds]
    if len(folds) < 2:
        log.warning("cross-fitting needs two folds with candidates, found %d: rule left untuned", len(folds))
        return None
    parts = []
    for fold in folds:
        held_out = rows.filter(pl.col("fold") == fold)

        def train(directory: Path, fold: int = fold, held_out: pl.DataFrame = held_out) \
                -> tuple[np.ndarray, list[dict[str, Any]]]:
            trainer = fold_trainer(config, catalog, rows, crossfit, fold, inits[fold], directory, cache_dir)
            reranker = trainer.run()
            return reranker.logits(with_pair_texts(held_out, catalog, reranker)), trainer.history

        logits = run_fold(work / f"fold-{fold}", f"fold {fold}", train).predictions
        parts.append(held_out.select("topic_id", "content_id", "fold", "rank", "label", "dense_score", "dense_rank")
                     .with_columns(pl.Series("logit", logits, dtype=pl.Float32)))
    return pl.concat(parts)


def fold_trainer(config: RerankerConfig, catalog: Catalog, rows: pl.DataFrame, crossfit: CrossFit, fold: int,
                 init: Path | None, directory: Path, cache_dir: Path) -> RerankerTrainer:
    """The trainer of fold `fold`'s model: from `init`, on what may train while the fold is held out."""
    train_rows = training_rows(rows.filter(pl.col("topic_id").is_in(list(crossfit.training[fold]))),
                               config.hard_negatives)
    texts = with_pair_texts(train_rows, catalog, Reranker.load(init, config.pair_format))
    return RerankerTrainer(config, train_rows, texts, init, directory, f"fold {fold}", cache_dir)
