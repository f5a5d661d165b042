"""`edurank train classifier`: the misconception classifier, k-fold, bagged over folds and seeds.

Per fold and seed, a member (the encoder's upper layers + a label head, see `classifier.model`) trains on the
other folds with cross-entropy over the labels its question allows; AWP is optional. The fold's held-out
probabilities, averaged over seeds, are the out-of-fold (OOF) predictions; their MAP@3 is the figure every
choice is judged by. Members are trained for a fixed number of epochs and the last weights kept, so nothing
is selected on the held-out fold. The served ensemble is every member, probabilities averaged.

A confident-learning pass (cleanlab) over the OOF probabilities lists likely label errors. A later run can
drop or down-weight them in training (`--label-issues ARTIFACT --noisy drop|downweight`); its figures on the
rows not flagged ("clean") tell whether that helps.

The question book (options, correct answer, misconception names) is fitted on every row, as a user's
training CSV would be; label masks at training come from the fold's training rows only. The trunk's output
for every prompt is cached under `<out>/.cache/`, keyed by data, encoder, split layer and length, so each
step runs only the upper layers and later runs skip the trunk altogether. Rerunning a stopped command resumes
from each member's last checkpoint and keeps finished members.
"""

from __future__ import annotations

import json
import logging
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
from classifier.data import ANSWER, EXPLANATION, LABEL, QUESTION, QUESTION_TEXT, ROW, load_responses
from classifier.evaluation import classification_report, find_label_issues, ranked_labels
from classifier.model import Member, MemberConfig, Trunk, masked_log_softmax
from classifier.predictor import BOOK, ISSUES, KIND, LABELS, MEMBERS_DIR, OOF, TRUNK_DIR
from classifier.prompts import QuestionBook, build_prompt
from edurank.artifacts import hash_files, hash_json, new_version, publish, resolve, staging_dir, write_manifest
from edurank.encoders import fingerprint, load_hf_encoder, model_path
from edurank.errors import InputError
from training.adversarial import AWP
from training.optim import adamw_with_warmup, load_checkpoint, save_checkpoint, seed_everything
from training.splits import check_train_folds, stratified_folds

log = logging.getLogger(__name__)
NOISY = ("none", "drop", "downweight")
CHECKPOINT, DONE = "checkpoint.pt", "valid.npy"
CACHE = ".cache"


@dataclass
class ClassifierConfig:
    base_model: str | None = None
    folds: int = 5
    train_folds: int | None = None  # train only the first N folds (exploring); OOF covers those folds
    seeds: tuple[int, ...] = (42,)
    max_length: int = 160
    freeze_layers: int = 4
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    dropout: float = 0.1
    layer_dropout: float = 0.0
    awp_lr: float = 0.0  # 0: no AWP
    awp_eps: float = 1e-3
    awp_from_epoch: int = 1  # AWP from this epoch on (0-based): the first epoch learns the task first
    noisy: str = "none"
    noisy_weight: float = 0.3
    label_issues: str | None = None  # a classifier artifact (its label_issues.parquet) or such a parquet file
    evals_per_epoch: int = 1
    issue_filter: str = "prune_by_noise_rate"

    def __post_init__(self) -> None:
        check_train_folds(self.train_folds, self.folds)
        if self.noisy not in NOISY:
            raise InputError(f"--noisy {self.noisy}: choose one of {', '.join(NOISY)}")
        if self.noisy != "none" and not self.label_issues:
            raise InputError(f"--noisy {self.noisy} needs --label-issues (a classifier artifact that listed them)")
        if not self.seeds:
            raise InputError("--seeds: give at least one seed")
        if self.max_length < 16:
            raise InputError(f"--max-length {self.max_length}: too short for a prompt (at least 16)")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}


# -- the trunk's output, cached ------------------------------------------------------------------------------

@dataclass
class TrunkCache:
    """The trunk's hidden states for every prompt, rows stacked token after token (float16, memory-mapped):
    row i is `hidden[offsets[i]:offsets[i + 1]]`."""

    hidden: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, trunk: Trunk, tokenizer: Any, prompts: Sequence[str], max_length: int, path: Path) -> TrunkCache:
        if path.is_file() and path.with_suffix(".offsets.npy").is_file():
            log.info("trunk cache: reusing %s", path)
            return cls(np.load(path, mmap_mode="r"), np.load(path.with_suffix(".offsets.npy")))
        lengths = np.array([len(ids) for ids in tokenizer(list(prompts), truncation=True,
                                                            max_length=max_length)["input_ids"]])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npy")
        hidden = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                           shape=(int(offsets[-1]), trunk.embeddings.word_embeddings.embedding_dim))
        order = np.argsort(lengths)
        for start in tqdm(range(0, len(order), 64), desc="trunk cache", unit="batch"):
            rows = order[start:start + 64]
            features = tokenizer([prompts[r] for r in rows], truncation=True, max_length=max_length, padding=True,
                                 return_tensors="pt")
            states = trunk(features["input_ids"], features["attention_mask"]).numpy()
            for row, state in zip(rows, states, strict=True):
                hidden[offsets[row]:offsets[row + 1]] = state[:lengths[row]]
        hidden.flush()
        del hidden
        np.save(path.with_suffix(".offsets.npy"), offsets)
        tmp.replace(path)
        return cls(np.load(path, mmap_mode="r"), offsets)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states padded to the batch's longest row, attention mask) for `rows`."""
        lengths = [int(self.offsets[r + 1] - self.offsets[r]) for r in rows]
        hidden = np.zeros((len(rows), max(lengths), self.hidden.shape[1]), dtype=np.float32)
        mask = np.zeros((len(rows), max(lengths)), dtype=np.int64)
        for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            hidden[i, :length] = self.hidden[self.offsets[row]:self.offsets[row + 1]]
            mask[i, :length] = 1
        return torch.from_numpy(hidden), torch.from_numpy(mask)


def length_grouped_batches(rows: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches of rows of similar length (less padding): rows shuffled, sorted by length within
    chunks of 50 batches, cut into batches, batch order shuffled. Depends only on `seed`."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(rows)
    chunk = batch_size * 50
    ordered = np.concatenate([part[np.argsort(lengths[part], kind="stable")]
                              for part in np.split(shuffled, range(chunk, len(shuffled), chunk))])
    batches = [ordered[i:i + batch_size].tolist() for i in range(0, len(ordered), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# -- one member ----------------------------------------------------------------------------------------------

class MemberTrainer:
    """Trains one member on cached trunk states; checkpoints at every evaluation, resumes from the last."""

    def __init__(self, config: ClassifierConfig, encoder: Any, cache: TrunkCache, targets: np.ndarray,
                 allowed: np.ndarray, weights: np.ndarray, train_rows: np.ndarray, valid_rows: np.ndarray,
                 seed: int, fold: int, work_dir: Path):
        self.config, self.cache, self.seed, self.work_dir = config, cache, seed, work_dir
        self.targets, self.allowed, self.weights = torch.from_numpy(targets), torch.from_numpy(allowed), weights
        self.train_rows, self.valid_rows = train_rows, valid_rows
        self.label = f"fold {fold} seed {seed}"
        seed_everything(seed)
        self.member = Member(encoder, MemberConfig(labels=allowed.shape[1], split=config.freeze_layers,
                                                   dropout=config.dropout, layer_dropout=config.layer_dropout,
                                                   seed=seed, fold=fold))
        self.awp = AWP(self.member, config.awp_lr, config.awp_eps) if config.awp_lr else None

    def batches(self, epoch: int) -> list[list[int]]:
        return length_grouped_batches(self.train_rows, self.cache.lengths(), self.config.batch_size,
                                      self.seed * 1000 + epoch)

    def loss(self, rows: list[int]) -> torch.Tensor:
        hidden, mask = self.cache.batch(rows)
        log_probs = masked_log_softmax(self.member(hidden, mask), self.allowed[rows])
        nll = -log_probs.gather(1, self.targets[rows].unsqueeze(1)).squeeze(1)
        weights = torch.from_numpy(self.weights[rows]).float()
        return (nll * weights).sum() / weights.sum().clamp(min=1e-6)

    @torch.inference_mode()
    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.member.eval()
        by_length = np.argsort(self.cache.lengths()[rows], kind="stable")  # positions in `rows`, shortest first
        probabilities = np.empty((len(rows), self.allowed.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), 128):
            positions = by_length[start:start + 128]
            batch = rows[positions].tolist()
            hidden, mask = self.cache.batch(batch)
            probabilities[positions] = masked_log_softmax(self.member(hidden, mask), self.allowed[batch]).exp().numpy()
        self.member.train()
        return probabilities

    def run(self) -> tuple[Member, np.ndarray, list[dict[str, float]]]:
        config = self.config
        batches_per_epoch = len(self.batches(0))
        decays = [p for n, p in self.member.named_parameters() if p.ndim > 1 and "LayerNorm" not in n]
        decay_ids = {id(p) for p in decays}
        head_ids = {id(p) for p in self.member.head.parameters()}
        groups = [{"params": [p for p in self.member.parameters() if id(p) not in head_ids and id(p) in decay_ids],
                   "lr": config.learning_rate},
                  {"params": [p for p in self.member.parameters() if id(p) not in head_ids and id(p) not in decay_ids],
                   "lr": config.learning_rate, "weight_decay": 0.0},
                  {"params": list(self.member.head.parameters()), "lr": config.head_learning_rate}]
        optimizer, scheduler = adamw_with_warmup(groups, config.learning_rate, config.weight_decay,
                                                 config.warmup_ratio, batches_per_epoch * config.epochs)
        eval_at = {round(batches_per_epoch * (i + 1) / config.evals_per_epoch) - 1
                   for i in range(config.evals_per_epoch)}
        state: dict[str, Any] = {"epoch": 0, "batch": 0, "history": []}
        checkpoint = load_checkpoint(self.work_dir / CHECKPOINT)
        if checkpoint is not None:
            self.member.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            state = checkpoint["state"]
            log.info("%s: resuming at epoch %d, batch %d", self.label, state["epoch"] + 1, state["batch"])
        self.member.train()
        predicted = None
        while state["epoch"] < config.epochs:
            epoch, batches = state["epoch"], self.batches(state["epoch"])
            bar = tqdm(range(state["batch"], len(batches)), desc=f"{self.label} epoch {epoch + 1}/{config.epochs}",
                       unit="batch")
            losses: list[float] = []
            for index in bar:
                loss = self.loss(batches[index])
                loss.backward()
                if self.awp is not None and epoch >= config.awp_from_epoch:
                    self.awp.attack()
                    self.loss(batches[index]).backward()
                    self.awp.restore()
                torch.nn.utils.clip_grad_norm_(self.member.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
                if index in eval_at:
                    predicted = self.evaluate(state, epoch, index, len(batches), float(np.mean(losses)))
                    save_checkpoint(self.work_dir / CHECKPOINT, {
                        "model": self.member.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state})
        if predicted is None:  # resumed after the last evaluation's checkpoint
            predicted = self.predict(self.valid_rows)
        return self.member.eval(), predicted, state["history"]

    def evaluate(self, state: dict[str, Any], epoch: int, index: int, batches: int, loss: float) -> np.ndarray:
        predicted = self.predict(self.valid_rows)
        score = fold_map(self.targets.numpy()[self.valid_rows], predicted)
        state["history"].append({"epoch": round(epoch + (index + 1) / batches, 2), "loss": round(loss, 4),
                                 "map3": round(score, 4)})
        log.info("%s: epoch %.2f  train loss %.4f  fold MAP@3 %.4f", self.label, epoch + (index + 1) / batches,
                 loss, score)
        state["epoch"], state["batch"] = (epoch + 1, 0) if index + 1 == batches else (epoch, index + 1)
        return predicted


def fold_map(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """MAP@3 of label indices ranked by probability."""
    top = np.argsort(-probabilities, axis=1)[:, :3]
    hits = top == targets[:, None]
    return float((hits / np.arange(1, 4)).sum(axis=1).mean())


# -- the run -------------------------------------------------------------------------------------------------

def read_label_issues(source: str | Path) -> set[str]:
    """Row ids flagged by an earlier run: its artifact's label_issues.parquet, or such a file itself."""
    path = Path(source)
    if path.is_dir():
        path = resolve(path) / ISSUES
    if not path.is_file():
        raise InputError(f"--label-issues {source}: no {ISSUES} there (train a classifier first)")
    return set(pl.read_parquet(path)[ROW].cast(pl.String).to_list())


def train_weights(config: ClassifierConfig, row_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(training weight per row, flagged per row) under --noisy: flagged rows get 0 (drop) or
    --noisy-weight (downweight)."""
    flagged = np.zeros(len(row_ids), dtype=bool)
    if config.label_issues:
        issues = read_label_issues(config.label_issues)
        flagged = np.array([row in issues for row in row_ids])
        log.info("label issues from %s: %d of %d rows flagged", config.label_issues, int(flagged.sum()),
                 len(row_ids))
    weight = {"none": 1.0, "drop": 0.0, "downweight": config.noisy_weight}[config.noisy]
    return np.where(flagged, weight, 1.0).astype(np.float32), flagged


def train_classifier(data: Path, out: Path, config: ClassifierConfig) -> Path:
    frame = load_responses(data)
    labels = sorted(frame[LABEL].unique().to_list())
    index_of = {label: i for i, label in enumerate(labels)}
    targets = np.array([index_of[label] for label in frame[LABEL]], dtype=np.int64)
    folds = stratified_folds(frame[LABEL].to_numpy(), config.folds, config.seeds[0])
    book = QuestionBook.fit(frame)
    prompts = [build_prompt(book, q, t, a, e) for q, t, a, e in
               frame.select(QUESTION, QUESTION_TEXT, ANSWER, EXPLANATION).iter_rows()]
    row_ids = frame[ROW].cast(pl.String).to_list()
    weights, flagged = train_weights(config, row_ids)
    base = model_path(config.base_model)
    data_hash = hash_files([data])
    encoder, tokenizer = load_hf_encoder(base)
    trunk = Trunk(encoder, config.freeze_layers)
    cache_key = hash_json({"prompts": hash_json(prompts), "base": fingerprint(base), "split": config.freeze_layers,
                           "max_length": config.max_length})
    started = time.perf_counter()
    cache = TrunkCache.build(trunk, tokenizer, prompts, config.max_length, out / CACHE / f"trunk-{cache_key[:16]}.npy")
    seconds = {"trunk_cache": round(time.perf_counter() - started, 1)}
    run_hash = hash_json({"config": config.to_dict(), "data": data_hash, "base": fingerprint(base)})
    with staging_dir(out, f"classifier-{run_hash[:12]}", keep_on_error=True) as work:
        oof = np.full((len(frame), len(labels)), np.nan, dtype=np.float32)
        figures: dict[str, Any] = {}
        member_dirs = []
        started = time.perf_counter()
        for fold in range(config.train_folds or config.folds):
            train, valid = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            fold_book = QuestionBook.fit(frame[train])
            allowed = np.stack([fold_book.allowed(q, a, labels) for q, a in frame.select(QUESTION, ANSWER).iter_rows()])
            allowed[train, targets[train]] = True  # a noisy label outside its question's mask still trains
            fold_probabilities = []
            for seed in config.seeds:
                member_dir = work / MEMBERS_DIR / f"fold{fold}-seed{seed}"
                member_dir.mkdir(parents=True, exist_ok=True)
                if (member_dir / DONE).is_file():
                    log.info("fold %d seed %d: finished in an earlier run", fold, seed)
                    predicted = np.load(member_dir / DONE)
                    history = json.loads((member_dir / "history.json").read_text())
                else:
                    trainer = MemberTrainer(config, encoder, cache, targets, allowed, weights, train, valid, seed,
                                            fold, member_dir)
                    member, predicted, history = trainer.run()
                    member.save(member_dir)
                    (member_dir / "history.json").write_text(json.dumps(history))
                    np.save(member_dir / DONE, predicted)
                    (member_dir / CHECKPOINT).unlink(missing_ok=True)
                member_dirs.append(member_dir)
                fold_probabilities.append(predicted)
                figures[f"fold{fold}-seed{seed}"] = {"map3": round(fold_map(targets[valid], predicted), 4),
                                                     "history": history}
            oof[valid] = np.mean(fold_probabilities, axis=0)
            log.info("fold %d: MAP@3 %.4f (%d seed(s) averaged)", fold, fold_map(targets[valid], oof[valid]),
                     len(config.seeds))
        seconds["members"] = round(time.perf_counter() - started, 1)
        covered = np.isfinite(oof).all(axis=1)
        truth = [labels[t] for t in targets[covered]]
        report = classification_report(truth, ranked_labels(oof[covered], labels))
        clean = covered & ~flagged
        report_clean = classification_report([labels[t] for t in targets[clean]], ranked_labels(oof[clean], labels))
        issues = find_label_issues(frame.filter(pl.Series(covered)), oof[covered], labels, config.issue_filter)
        log.info("OOF over %d rows: MAP@3 %.4f, accuracy@1 %.4f; %d likely label errors", int(covered.sum()),
                 report["map3"], report["accuracy1"], len(issues))

        final = out / f".classifier-{run_hash[:12]}.publish"
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir()
        encoder.save_pretrained(final / TRUNK_DIR)
        tokenizer.save_pretrained(final / TRUNK_DIR)
        for member_dir in member_dirs:
            target = final / MEMBERS_DIR / member_dir.name
            target.mkdir(parents=True)
            for name in ("member.json", "member.safetensors"):
                shutil.copy2(member_dir / name, target / name)
        (final / BOOK).write_text(json.dumps(book.to_dict(), indent=2))
        (final / LABELS).write_text(json.dumps({"labels": labels, "max_length": config.max_length}, indent=2))
        write_oof(final / OOF, frame, folds, covered, flagged, oof, labels)
        issues.write_parquet(final / ISSUES)
        version = new_version(run_hash)
        write_manifest(final, {
            "kind": KIND, "version": version, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "edurank": edurank.__version__, "base_model": str(base), "fingerprint": fingerprint(base),
            "data": {"file": str(data), "hash": data_hash, "rows": len(frame), "questions": len(book.questions),
                     "labels": len(labels)},
            "params": config.to_dict(),
            "metrics": {"oof_rows": int(covered.sum()), "oof": report, "oof_unflagged": report_clean,
                        "flagged_in_training": int(flagged.sum()), "label_issues": len(issues),
                        "members": figures, "train_seconds": seconds},
        })
        path = publish(final, out, version)
    shutil.rmtree(work, ignore_errors=True)
    return path


def write_oof(path: Path, frame: pl.DataFrame, folds: np.ndarray, covered: np.ndarray, flagged: np.ndarray,
              oof: np.ndarray, labels: Sequence[str]) -> None:
    """One row per response: its fold, whether OOF covers it, whether training flagged it, its label and the
    OOF probability of every label (a list column, in `labels` order)."""
    pl.DataFrame({ROW: frame[ROW], QUESTION: frame[QUESTION], LABEL: frame[LABEL], "fold": folds,
                  "covered": covered, "flagged": flagged,
                  "probabilities": np.nan_to_num(oof).tolist()}).write_parquet(path)
