"""`edurank train retriever`: SimCSE-style contrastive training of the bi-encoder with in-batch negatives,
then rounds of hard negatives mined by the previous round's model.

Round 0 trains with in-batch negatives only; each later round mines top-N non-gold candidates with the
current model and trains on (topic, gold item, hard negative) triplets. Each round is one run of the shared
loop with its own checkpoint (which also holds the round's mined negatives), so rerunning the same command
resumes mid-round, or starts the next round from the last finished one's weights.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.util import batch_to_device

import edurank
from edurank.artifacts import ModelRef, fresh_dir, hash_json, publish_artifact, staging_dir
from edurank.retriever.catalog import Catalog
from edurank.retriever.evaluation import evaluate_retrieval
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import content_texts, topic_texts
from edurank.retriever.topic_folds import split_of, split_topics
from edurank.training.config import RetrieverConfig
from edurank.training.language_batches import Example, language_batches
from edurank.training.loop import (
    CHECKPOINT,
    Loop,
    LoopState,
    adamw_with_warmup,
    freeze_lower_layers,
    load_checkpoint,
    resolve_device,
    restore_random_states,
    seed_everything,
)
from edurank.training.negatives import Pair, mine_hard_negatives, topic_clusters

log = logging.getLogger(__name__)


def examples_for(catalog: Catalog, topic_ids: list[str], negatives: dict[Pair, list[str]] | None,
                 rng: random.Random) -> list[Example]:
    """One example per gold pair; with mined negatives, one drawn at random from the pair's pool (a new
    draw each epoch). A pair whose pool is empty gets a random non-gold item of its language, so every
    row of a batch has a negative (a batch is encoded with a negative column or without one)."""
    language = dict(catalog.topics.select("id", "language").iter_rows())
    by_language: dict[str, list[str]] = {}
    for content_id, content_language in catalog.content.select("id", "language").iter_rows():
        by_language.setdefault(content_language, []).append(content_id)
    examples = []
    for topic in topic_ids:
        for positive in sorted(catalog.gold[topic]):
            negative = None
            if negatives is not None:
                pool = negatives.get((topic, positive)) or [
                    c for c in rng.sample(by_language[language[topic]], min(8, len(by_language[language[topic]])))
                    if c not in catalog.gold[topic]]
                negative = rng.choice(pool) if pool else None
            examples.append(Example(topic, positive, language[topic], negative))
    return examples


class RetrieverTrainer:
    """Owns one training run: its data, model, and the rounds of the shared loop (one checkpoint each)."""

    def __init__(self, catalog: Catalog, config: RetrieverConfig, work_dir: Path):
        self.catalog, self.config, self.work_dir = catalog, config, work_dir
        self.device = resolve_device(config.device)
        self.train_topics, self.held_out = split_topics(catalog, fold=config.fold, **split_of(config))
        self.eval_topics = self.held_out or self.train_topics
        self.encoder = BiEncoder.load(config.base_model, config.max_tokens, str(self.device))
        self.base = ModelRef(str(self.encoder.path), self.encoder.fingerprint)
        freeze_lower_layers(self.encoder.model[0].auto_model, config.freeze_layers)
        # symmetric: each gold item must also pick its topic among the batch's topics (a second signal
        # per pair at no extra encoding cost)
        directions = ("query_to_doc", "doc_to_query") if config.symmetric else ("query_to_doc",)
        self.loss = MultipleNegativesRankingLoss(self.encoder.model, scale=config.scale, directions=directions,
                                                 partition_mode="per_direction" if config.symmetric else "joint")
        builder = self.encoder.builder
        topics = catalog.topics.filter(pl.col("id").is_in(self.train_topics))
        self.topic_text = dict(zip(topics["id"], topic_texts(catalog, builder, topics), strict=True))
        self.content_text = dict(zip(catalog.content["id"], content_texts(catalog, builder), strict=True))

    def round_dir(self, round_: int) -> Path:
        return self.work_dir / f"round{round_}"

    def last_round(self) -> tuple[int, dict[str, Any] | None]:
        """The newest round with a checkpoint and that checkpoint (-1, None when nothing was saved)."""
        rounds = sorted(int(p.parent.name[5:]) for p in self.work_dir.glob(f"round*/{CHECKPOINT}"))
        return (rounds[-1], load_checkpoint(self.round_dir(rounds[-1]) / CHECKPOINT)) if rounds else (-1, None)

    def step_loss(self, batch: list[Example]) -> torch.Tensor:
        columns = [[self.topic_text[e.topic] for e in batch], [self.content_text[e.positive] for e in batch]]
        if all(e.negative is not None for e in batch):
            columns.append([self.content_text[e.negative] for e in batch])  # type: ignore[index]
        features = [batch_to_device(self.encoder.model.preprocess(texts), self.device) for texts in columns]
        return self.loss(features, torch.empty(0))

    def evaluate(self) -> dict[str, Any]:
        return evaluate_retrieval(self.encoder, self.catalog, self.eval_topics, self.config.eval_ks)

    def run(self) -> list[dict[str, Any]]:
        """Every round in turn; returns the history (the untrained model first, then one entry per epoch)."""
        config = self.config
        seed_everything(config.seed)
        start, payload = self.last_round()
        if payload is None:
            self.encoder.model.eval()
            with torch.inference_mode():
                history = [{"round": -1, "epoch": 0, "label": "untrained", **self.evaluate()}]
            start, extra = 0, {"history": history, "negatives": None, "clusters": None}
        else:
            extra = payload["state"].extra
            if payload["state"].epoch >= config.epochs_in(start):  # that round finished: the next starts afresh
                self.encoder.model.load_state_dict(payload["model"])
                restore_random_states(payload["random"])
                extra = self.after(start, payload["state"])
                start += 1
        for round_ in range(start, config.rounds + 1):
            loop = self.round_loop(round_, extra)
            state = loop.fit(config.epochs_in(round_),
                             lambda epoch, r=round_, loop=loop: self.batches(r, epoch, loop.state.extra),
                             self.step_loss, self.evaluate)
            extra = self.after(round_, state)
            for older in range(round_):
                shutil.rmtree(self.round_dir(older), ignore_errors=True)
        return extra["history"]

    def round_loop(self, round_: int, extra: dict[str, Any]) -> Loop[list[Example]]:
        """The loop of one round: its optimiser and schedule, and (once mined) its negatives in the checkpoint."""
        fresh_start = not (self.round_dir(round_) / CHECKPOINT).is_file()
        self.round_dir(round_).mkdir(parents=True, exist_ok=True)
        if fresh_start:
            self.mine(round_, extra)
        steps = sum(len(self.batches(round_, epoch, extra)) for epoch in range(self.config.epochs_in(round_)))
        optimizer, scheduler = adamw_with_warmup(self.encoder.model.parameters(), self.config.learning_rate,
                                                 self.config.weight_decay, self.config.warmup_ratio, steps)
        loop: Loop[list[Example]] = Loop(self.encoder.model, optimizer, scheduler, self.device, self.round_dir(round_),
                                         f"round {round_}", self.config.mixed_precision)
        loop.state.extra = extra
        return loop

    def after(self, round_: int, state: LoopState) -> dict[str, Any]:
        """What the round after `round_` starts from: the history so far (this round's entries labelled with
        it), nothing mined yet."""
        labelled = [{**entry, "round": round_, "epoch": int(entry["epoch"]),
                     "label": "held-out" if self.held_out else "train"} for entry in state.history]
        return {"history": state.extra["history"] + labelled, "negatives": None, "clusters": None}

    def mine(self, round_: int, extra: dict[str, Any]) -> None:
        """With the current model: hard negatives (rounds after the first) and topic clusters for batching."""
        self.encoder.model.eval()
        with torch.inference_mode():
            if round_ > 0:
                extra["negatives"] = mine_hard_negatives(self.encoder, self.catalog, self.train_topics,
                                                         self.config.top_n, self.config.margin)
                pools = [len(p) for p in extra["negatives"].values()]
                log.info("round %d: mined negatives for %d pairs, %.1f per pair on average, %d pairs with none",
                         round_, len(pools), float(np.mean(pools)) if pools else 0.0, pools.count(0))
            if self.config.cluster_size:
                extra["clusters"] = topic_clusters(self.encoder, self.catalog, self.train_topics,
                                                   self.config.cluster_size, self.config.seed + round_)

    def batches(self, round_: int, epoch: int, extra: dict[str, Any]) -> list[list[Example]]:
        """The batches of one epoch of one round: a function of the seed, round, epoch and the round's mined
        negatives alone, so a resumed epoch replays them."""
        rng = random.Random(hash_json([self.config.seed, round_, epoch]))
        examples = examples_for(self.catalog, self.train_topics, extra["negatives"], rng)
        return language_batches(examples, self.catalog.gold, self.config.batch_size, rng, extra["clusters"])


def train_retriever(catalog: Catalog, out: Path, config: RetrieverConfig) -> Path:
    """Train, then publish `<out>/<version>/` (a sentence-transformers dir plus manifest.json)."""
    run_hash = hash_json({"config": asdict(config), "data": catalog.data_hash, "edurank": edurank.__version__})
    started = time.time()
    with staging_dir(out, f"retriever-{run_hash[:12]}", keep_on_error=True) as work:
        trainer = RetrieverTrainer(catalog, config, work)
        history = trainer.run()
        final = fresh_dir(work / "artifact")
        trainer.encoder.save(final)
        return publish_artifact(
            final, out, run_hash, kind=BiEncoder.KIND, base_model=trainer.base,
            data={"hash": catalog.data_hash, "files": [str(p) for p in catalog.files],
                  "train_topics": len(trainer.train_topics), "held_out_topics": len(trainer.held_out)},
            params=asdict(config), metrics={"final": history[-1], "history": history},
            seconds={"train": time.time() - started})
