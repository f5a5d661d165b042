"""`edurank train retriever`: SimCSE-style contrastive training of the bi-encoder with in-batch negatives,
then rounds of hard negatives mined by the previous round's model.

Round 0 trains with in-batch negatives only; each later round mines top-N non-gold candidates with the
current model and trains on (topic, gold item, hard negative) triplets. A checkpoint after every epoch
lives in the run's staging directory, so rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from tqdm.auto import tqdm

import edurank
from edurank.artifacts import hash_files, hash_json, new_version, publish, staging_dir, write_manifest
from retriever.catalog import Catalog
from retriever.evaluation import DEFAULT_KS, evaluate_retrieval
from retriever.model import DEFAULT_MAX_TOKENS, BiEncoder
from retriever.texts import content_texts, topic_texts
from training.batching import Example, language_batches
from training.negatives import Pair, mine_hard_negatives, topic_clusters
from training.optim import adamw_with_warmup, freeze_lower_layers, load_checkpoint, save_checkpoint, seed_everything
from training.splits import split_topics

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


@dataclass
class RetrieverConfig:
    """Everything that changes the trained model; hashed to name the run (and find its checkpoint)."""

    base_model: str | None = None
    rounds: int = 2
    epochs: int = 3
    hard_negative_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_tokens: int = DEFAULT_MAX_TOKENS
    scale: float = 20.0
    symmetric: bool = False
    cluster_size: int = 0
    top_n: int = 50
    margin: float = 0.95
    freeze_layers: int = 0
    folds: int = 5
    fold: int | None = None
    seed: int = 42
    eval_ks: tuple[int, ...] = field(default=DEFAULT_KS)

    def epochs_in(self, round_: int) -> int:
        return self.epochs if round_ == 0 else self.hard_negative_epochs


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
    """Owns one training run: its data, model, optimiser state and the checkpoint that resumes it."""

    def __init__(self, catalog: Catalog, config: RetrieverConfig, work_dir: Path):
        self.catalog, self.config, self.work_dir = catalog, config, work_dir
        self.train_topics, self.held_out = split_topics(catalog, config.folds, config.fold, config.seed)
        self.eval_topics = self.held_out or self.train_topics
        self.encoder = BiEncoder.load(config.base_model, config.max_tokens)
        self.base = {"path": str(self.encoder.path), "fingerprint": self.encoder.fingerprint}
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
        self.history: list[dict[str, Any]] = []
        self.state: dict[str, Any] = fresh_round(0)

    # -- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self, optimizer: torch.optim.Optimizer, scheduler: Any, rng: random.Random) -> None:
        payload = {"state": self.state, "history": self.history, "model": self.encoder.model.state_dict(),
                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}
        save_checkpoint(self.work_dir / CHECKPOINT, payload)

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self.work_dir / CHECKPOINT
        payload = load_checkpoint(path)
        if payload is None:
            return None
        self.encoder.model.load_state_dict(payload["model"])
        self.state, self.history = payload["state"], payload["history"]
        log.info("resuming from %s: round %d, %d epoch(s) done", path, self.state["round"], self.state["epoch"])
        return payload

    # -- training ----------------------------------------------------------------------------------
    def optimiser(self, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        return adamw_with_warmup(self.encoder.model.parameters(), self.config.learning_rate,
                                 self.config.weight_decay, self.config.warmup_ratio, steps)

    def train_step(self, batch: list[Example], optimizer: torch.optim.Optimizer, scheduler: Any) -> float:
        columns = [[self.topic_text[e.topic] for e in batch], [self.content_text[e.positive] for e in batch]]
        if all(e.negative is not None for e in batch):
            columns.append([self.content_text[e.negative] for e in batch])  # type: ignore[index]
        features = [self.encoder.model.preprocess(texts) for texts in columns]
        loss = self.loss(features, torch.empty(0))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.encoder.model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def evaluate(self) -> dict[str, Any]:
        self.encoder.model.eval()
        with torch.inference_mode():
            report = evaluate_retrieval(self.encoder, self.catalog, self.eval_topics, self.config.eval_ks)
        self.encoder.model.train()
        return report

    def run(self) -> list[dict[str, Any]]:
        config = self.config
        seed_everything(config.seed)
        rng = random.Random(config.seed)
        resumed = self.load_checkpoint()
        if resumed is not None:
            rng.setstate(resumed["rng"])
            torch.set_rng_state(resumed["torch_rng"])
        if not self.history:
            self.history.append({"round": -1, "epoch": 0, "label": "untrained", **self.evaluate()})
            log.info("untrained: %s", summary(self.history[-1]))
        for round_ in range(self.state["round"], config.rounds + 1):
            epochs = config.epochs_in(round_)
            if self.state["epoch"] >= epochs:  # the checkpoint closed this round: start the next afresh
                self.state = fresh_round(round_ + 1)
                resumed = None
                continue
            self.mine(round_)
            steps_per_epoch = len(self.make_batches(rng, dry_run=True))
            optimizer, scheduler = self.optimiser(steps_per_epoch * epochs)
            if resumed is not None:  # mid-round: the schedule continues where it stopped
                optimizer.load_state_dict(resumed["optimizer"])
                scheduler.load_state_dict(resumed["scheduler"])
                resumed = None
            self.encoder.model.train()
            for epoch in range(self.state["epoch"], epochs):
                batches = self.make_batches(rng)
                losses = []
                bar = tqdm(batches, desc=f"round {round_} epoch {epoch + 1}/{epochs}", unit="batch")
                for batch in bar:
                    losses.append(self.train_step(batch, optimizer, scheduler))
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                report = self.evaluate()
                self.history.append({"round": round_, "epoch": epoch + 1, "loss": float(np.mean(losses)),
                                     "label": "held-out" if self.held_out else "train", **report})
                log.info("round %d epoch %d: loss %.4f %s", round_, epoch + 1, np.mean(losses),
                         summary(report))
                self.state["epoch"] = epoch + 1
                self.save_checkpoint(optimizer, scheduler, rng)
            self.state = fresh_round(round_ + 1)
        return self.history

    def mine(self, round_: int) -> None:
        """With the current model: hard negatives (rounds after the first) and topic clusters for batching."""
        self.encoder.model.eval()
        with torch.inference_mode():
            if round_ > 0 and self.state["negatives"] is None:
                self.state["negatives"] = mine_hard_negatives(self.encoder, self.catalog, self.train_topics,
                                                              self.config.top_n, self.config.margin)
                pools = [len(p) for p in self.state["negatives"].values()]
                log.info("round %d: mined negatives for %d pairs, %.1f per pair on average, %d pairs with none",
                         round_, len(pools), float(np.mean(pools)) if pools else 0.0, pools.count(0))
            if self.config.cluster_size and self.state["clusters"] is None:
                self.state["clusters"] = topic_clusters(self.encoder, self.catalog, self.train_topics,
                                                        self.config.cluster_size, self.config.seed + round_)
        self.encoder.model.train()

    def make_batches(self, rng: random.Random, dry_run: bool = False) -> list[list[Example]]:
        """This epoch's batches; `dry_run` counts them on a copy of the generator, leaving it untouched."""
        generator = random.Random() if dry_run else rng
        if dry_run:
            generator.setstate(rng.getstate())
        examples = examples_for(self.catalog, self.train_topics, self.state["negatives"], generator)
        return language_batches(examples, self.catalog.gold, self.config.batch_size, generator,
                                self.state["clusters"])


def fresh_round(round_: int) -> dict[str, Any]:
    """Training state at the start of a round: nothing mined yet."""
    return {"round": round_, "epoch": 0, "negatives": None, "clusters": None}


def summary(report: dict[str, Any]) -> str:
    keys = [k for k in report if k.startswith(("recall@", "map@"))]
    return " ".join(f"{k}={report[k]:.3f}" for k in keys)


def train_retriever(catalog: Catalog, out: Path, config: RetrieverConfig) -> Path:
    """Train, then publish `<out>/<version>/` (a sentence-transformers dir plus manifest.json)."""
    run_hash = hash_json({"config": asdict(config), "data": catalog.data_hash, "edurank": edurank.__version__})
    started = time.time()
    with staging_dir(out, f"run-{run_hash[:12]}", keep_on_error=True) as work:
        trainer = RetrieverTrainer(catalog, config, work)
        history = trainer.run()
        (work / CHECKPOINT).unlink(missing_ok=True)
        trainer.encoder.model.save(str(work))
        weights = sorted(work.glob("*.safetensors"))
        version = new_version(run_hash)
        final_metrics = history[-1]
        write_manifest(work, {
            "kind": "retriever", "version": version, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "edurank": edurank.__version__, "fingerprint": hash_files(weights),
            "base_model": trainer.base, "data": {"catalog_hash": catalog.data_hash,
                                                 "files": [str(p) for p in catalog.files],
                                                 "train_topics": len(trainer.train_topics),
                                                 "held_out_topics": len(trainer.held_out)},
            "params": asdict(config), "metrics": {"final": final_metrics, "history": history},
            "train_seconds": round(time.time() - started, 1),
        })
        return publish(work, out, version)

