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

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from classifier.data import ANSWER, EXPLANATION, LABEL, QUESTION, QUESTION_TEXT, ROW, load_responses
from classifier.evaluation import classification_report, find_label_issues, ranked_labels, single_label_map
from classifier.model import Ensemble, Member, MemberConfig, masked_log_softmax
from classifier.predictor import ISSUES, OOF, MisconceptionClassifier
from classifier.prompts import QuestionBook, build_prompt
from edurank.artifacts import ModelRef, fresh_dir, hash_files, hash_json, publish_artifact, resolve, staging_dir
from edurank.encoders import fingerprint, load_hf_encoder, model_path
from edurank.errors import InputError
from edurank.layers import Trunk
from edurank.options import option
from edurank.splits import check_train_folds, stratified_folds
from training.adversarial import AWP
from training.loop import (
    EngineOptions,
    Loop,
    adamw_with_warmup,
    layerwise_groups,
    resolve_device,
    run_fold,
    seed_everything,
)
from training.trunk_cache import TrunkCache, length_grouped_batches

log = logging.getLogger(__name__)
NOISY = ("none", "drop", "downweight")
CACHE = ".cache"


@dataclass
class ClassifierConfig(EngineOptions):
    base_model: str | None = option(None, "encoder: a local BERT-like HF dir (default: bundled MiniLM)",
                                    flag="--model")
    folds: int = option(5, "label-stratified folds", minimum=2)
    train_folds: int | None = option(None, "train only the first N folds (exploring; OOF figures cover those "
                                           "folds)", minimum=1)
    seeds: tuple[int, ...] = option((42,), "comma-separated seeds: one member per fold and seed")
    max_length: int = option(160, "prompt tokens kept")
    freeze_layers: int = option(4, "frozen lower layers (their output is cached); the layers above train",
                                minimum=0)
    epochs: int = option(2, "epochs per member", minimum=1)
    batch_size: int = option(32, "responses per batch", minimum=1)
    learning_rate: float = option(1e-4, "learning rate of the trained encoder layers", flag="--lr")
    head_learning_rate: float = option(1e-3, "learning rate of the label head", flag="--head-lr")
    dropout: float = option(0.1, "dropout before the head")
    layer_dropout: float = option(0.0, "dropout inside the trained encoder layers (0: off, 1.6x faster steps on "
                                       "a CPU)")
    awp_lr: float = option(0.0, "adversarial weight perturbation step (0: off; 1.0 is usual)", flag="--awp",
                           metavar="LR")
    awp_eps: float = option(1e-3, "AWP's bound, relative to each weight")
    awp_from_epoch: int = option(1, "first epoch (0-based) with AWP: the first epoch learns the task first",
                                 minimum=0)
    noisy: str = option("none", "what training does with the rows --label-issues flags", choices=NOISY)
    noisy_weight: float = option(0.3, "loss weight of flagged rows (--noisy downweight)")
    label_issues: str | None = option(None, "a classifier artifact whose label_issues.parquet lists rows to "
                                            "--noisy (or such a parquet file)")
    evals_per_epoch: int = option(1, "held-out figures (and checkpoints) per epoch", minimum=1)
    issue_filter: str = option("prune_by_noise_rate", "cleanlab's filter for likely label errors")

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


# -- one member ----------------------------------------------------------------------------------------------

class MemberTrainer:
    """Trains one member on cached trunk states with the shared loop (a checkpoint at every evaluation)."""

    def __init__(self, config: ClassifierConfig, encoder: Any, cache: TrunkCache, targets: np.ndarray,
                 allowed: np.ndarray, weights: np.ndarray, train_rows: np.ndarray, valid_rows: np.ndarray,
                 seed: int, fold: int, work_dir: Path):
        self.config, self.cache, self.seed = config, cache, seed
        self.device = resolve_device(config.device)
        self.targets, self.allowed = torch.from_numpy(targets), torch.from_numpy(allowed)
        self.weights = torch.from_numpy(weights).float()
        self.train_rows, self.valid_rows = train_rows, valid_rows
        seed_everything(seed)
        self.member = Member(encoder, MemberConfig(labels=allowed.shape[1], split=config.freeze_layers,
                                                   dropout=config.dropout, layer_dropout=config.layer_dropout,
                                                   seed=seed, fold=fold)).to(self.device)
        groups = layerwise_groups(self.member, list(self.member.layers), config.learning_rate, 1.0,
                                  config.head_learning_rate, config.weight_decay)
        optimizer, scheduler = adamw_with_warmup(groups, config.learning_rate, config.weight_decay,
                                                 config.warmup_ratio, len(self.batches(0)) * config.epochs)
        awp = AWP(self.member, config.awp_lr, config.awp_eps) if config.awp_lr else None
        self.loop: Loop[list[int]] = Loop(self.member, optimizer, scheduler, self.device, work_dir,
                                          f"fold {fold} seed {seed}", config.mixed_precision, adversary=awp,
                                          adversary_from_epoch=config.awp_from_epoch)
        self.predicted: np.ndarray | None = None

    def batches(self, epoch: int) -> list[list[int]]:
        return length_grouped_batches(self.train_rows, self.cache.lengths(), self.config.batch_size,
                                      self.seed * 1000 + epoch)

    def log_probabilities(self, rows: Sequence[int]) -> torch.Tensor:
        hidden, mask = self.cache.batch(rows)
        logits = self.member(hidden.to(self.device), mask.to(self.device))
        return masked_log_softmax(logits, self.allowed[rows].to(self.device))

    def step_loss(self, rows: list[int]) -> torch.Tensor:
        nll = -self.log_probabilities(rows).gather(1, self.targets[rows].unsqueeze(1).to(self.device)).squeeze(1)
        weights = self.weights[rows].to(self.device)
        return (nll * weights).sum() / weights.sum().clamp(min=1e-6)

    @torch.inference_mode()
    def predict(self, rows: np.ndarray) -> np.ndarray:
        """(rows, labels) masked probabilities, in length-sorted batches, returned in `rows` order."""
        self.member.eval()
        by_length = np.argsort(self.cache.lengths()[rows], kind="stable")  # positions in `rows`, shortest first
        probabilities = np.empty((len(rows), self.allowed.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), 128):
            positions = by_length[start:start + 128]
            probabilities[positions] = self.log_probabilities(rows[positions].tolist()).exp().float().cpu().numpy()
        return probabilities

    def evaluate(self) -> dict[str, Any]:
        self.predicted = self.predict(self.valid_rows)
        return {"map3": round(fold_map(self.targets.numpy()[self.valid_rows], self.predicted), 4)}

    def run(self) -> tuple[Member, np.ndarray, list[dict[str, Any]]]:
        """Fixed epochs, last weights kept (nothing is selected on the held-out fold)."""
        state = self.loop.fit(self.config.epochs, self.batches, self.step_loss, self.evaluate,
                              self.config.evals_per_epoch)
        predicted = self.predicted if self.predicted is not None else self.predict(self.valid_rows)
        return self.member.cpu(), predicted, state.history


def fold_map(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """MAP@3 of label indices ranked by probability."""
    return single_label_map(targets, np.argsort(-probabilities, axis=1)[:, :3])


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
    device = resolve_device(config.device)
    trunk = Trunk(encoder, config.freeze_layers).to(device)
    cache_key = hash_json({"prompts": hash_json(prompts), "base": fingerprint(base), "split": config.freeze_layers,
                           "max_length": config.max_length})
    started = time.perf_counter()
    cache = TrunkCache.build(trunk, encoder.config.hidden_size, tokenizer, prompts, config.max_length,
                             out / CACHE / f"trunk-{cache_key[:16]}.npy", device)
    trunk.cpu()
    seconds = {"trunk_cache": time.perf_counter() - started}
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

                def train_member(directory: Path, seed: int = seed, fold: int = fold, train: np.ndarray = train,
                                 valid: np.ndarray = valid, allowed: np.ndarray = allowed) \
                        -> tuple[np.ndarray, list[dict[str, Any]]]:
                    trainer = MemberTrainer(config, encoder, cache, targets, allowed, weights, train, valid, seed,
                                            fold, directory)
                    member, predicted, history = trainer.run()
                    member.save(directory)
                    return predicted, history

                name = f"fold{fold}-seed{seed}"
                result = run_fold(work / "members" / name, name, train_member)
                member_dirs.append(result.directory)
                fold_probabilities.append(result.predictions)
                figures[name] = {"map3": round(fold_map(targets[valid], result.predictions), 4),
                                 "history": result.history}
            oof[valid] = np.mean(fold_probabilities, axis=0)
            log.info("fold %d: MAP@3 %.4f (%d seed(s) averaged)", fold, fold_map(targets[valid], oof[valid]),
                     len(config.seeds))
        seconds["members"] = time.perf_counter() - started
        covered = np.isfinite(oof).all(axis=1)
        truth = [labels[t] for t in targets[covered]]
        report = classification_report(truth, ranked_labels(oof[covered], labels))
        clean = covered & ~flagged
        report_clean = classification_report([labels[t] for t in targets[clean]], ranked_labels(oof[clean], labels))
        issues = find_label_issues(frame.filter(pl.Series(covered)), oof[covered], labels, config.issue_filter)
        log.info("OOF over %d rows: MAP@3 %.4f, accuracy@1 %.4f; %d likely label errors", int(covered.sum()),
                 report["map3"], report["accuracy1"], len(issues))

        members = [Member.load(directory, encoder) for directory in member_dirs]
        ensemble = Ensemble(encoder, trunk, tokenizer, members, config.max_length)
        final = fresh_dir(work / "artifact")
        MisconceptionClassifier(book, labels, ensemble).save(final)
        write_oof(final / OOF, frame, folds, covered, flagged, oof, labels)
        issues.write_parquet(final / ISSUES)
        return publish_artifact(
            final, out, run_hash, kind=MisconceptionClassifier.KIND, base_model=ModelRef(str(base), fingerprint(base)),
            data={"hash": data_hash, "files": [str(data)], "rows": len(frame), "questions": len(book.questions),
                  "labels": len(labels)},
            params=config.to_dict(), seconds=seconds,
            metrics={"oof_rows": int(covered.sum()), "oof": report, "oof_unflagged": report_clean,
                     "flagged_in_training": int(flagged.sum()), "label_issues": len(issues), "members": figures})


def write_oof(path: Path, frame: pl.DataFrame, folds: np.ndarray, covered: np.ndarray, flagged: np.ndarray,
              oof: np.ndarray, labels: Sequence[str]) -> None:
    """One row per response: its fold, whether OOF covers it, whether training flagged it, its label and the
    OOF probability of every label (a list column, in `labels` order)."""
    pl.DataFrame({ROW: frame[ROW], QUESTION: frame[QUESTION], LABEL: frame[LABEL], "fold": folds,
                  "covered": covered, "flagged": flagged,
                  "probabilities": np.nan_to_num(oof).tolist()}).write_parquet(path)
