"""`edurank train classifier`: the misconception classifier, k-fold, bagged over folds and seeds.

Per fold and seed, a member (the encoder's upper layers + a label head, see `edurank.classifier.model`) trains on the
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

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from edurank.artifacts import (
    ModelRef,
    atomic_save_array,
    fresh_dir,
    hash_files,
    hash_json,
    publish_artifact,
    resolve,
    staging_dir,
)
from edurank.backends.export import spread_rows
from edurank.classifier.data import ANSWER, EXPLANATION, LABEL, QUESTION, QUESTION_TEXT, ROW, load_responses
from edurank.classifier.evaluation import classification_report, find_label_issues, ranked_labels, single_label_map
from edurank.classifier.model import Ensemble, Member, MemberConfig, masked_log_softmax
from edurank.classifier.predictor import ISSUES, OOF, MisconceptionClassifier, Response, oof_probabilities
from edurank.classifier.prompts import QuestionBook, build_prompt
from edurank.encoders import fingerprint, load_hf_encoder, model_path
from edurank.errors import InputError
from edurank.folds import stratified_folds
from edurank.layers import Trunk
from edurank.training.adversarial import AWP
from edurank.training.config import ClassifierConfig, DistilConfig
from edurank.training.distil import Figure, Student, checked_teacher, distil, speed_against
from edurank.training.loop import (
    Loop,
    adamw_with_warmup,
    layerwise_groups,
    resolve_device,
    run_fold,
    seed_everything,
)
from edurank.training.trunk_cache import TrunkCache, length_grouped_batches

log = logging.getLogger(__name__)
CACHE = ".cache"


# -- one member ----------------------------------------------------------------------------------------------

class MemberTrainer:
    """Trains one member on cached trunk states with the shared loop (a checkpoint at every evaluation)."""

    def __init__(self, config: ClassifierConfig, encoder: Any, cache: TrunkCache, targets: np.ndarray,
                 allowed: np.ndarray, weights: np.ndarray, train_rows: np.ndarray, valid_rows: np.ndarray,
                 seed: int, fold: int | None, work_dir: Path, soft: SoftTargets | None = None):
        self.config, self.cache, self.seed, self.soft = config, cache, seed, soft
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

    def logits(self, rows: Sequence[int]) -> torch.Tensor:
        hidden, mask = self.cache.batch(rows)
        return self.member(hidden.to(self.device), mask.to(self.device))

    def log_probabilities(self, rows: Sequence[int]) -> torch.Tensor:
        return masked_log_softmax(self.logits(rows), self.allowed[rows].to(self.device))

    def step_loss(self, rows: list[int]) -> torch.Tensor:
        logits = self.logits(rows)
        allowed = self.allowed[rows].to(self.device)
        log_probabilities = masked_log_softmax(logits, allowed)
        nll = -log_probabilities.gather(1, self.targets[rows].unsqueeze(1).to(self.device)).squeeze(1)
        weights = self.weights[rows].to(self.device)
        hard = (nll * weights).sum() / weights.sum().clamp(min=1e-6)
        if self.soft is None:
            return hard
        return self.soft.loss(logits, allowed, rows, hard)

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
        if not len(self.valid_rows):  # a model trained on every row (a distilled student) has no held-out rows
            return {}
        return {"map3": round(fold_map(self.targets.numpy()[self.valid_rows], self.predicted), 4)}

    def run(self) -> tuple[Member, np.ndarray, list[dict[str, Any]]]:
        """Fixed epochs, last weights kept (nothing is selected on the held-out fold)."""
        state = self.loop.fit(self.config.epochs, self.batches, self.step_loss, self.evaluate,
                              self.config.evals_per_epoch)
        predicted = self.predicted if self.predicted is not None else self.predict(self.valid_rows)
        return self.member.cpu(), predicted, state.history


@dataclass
class SoftTargets:
    """Knowledge distillation (Hinton et al.): a teacher's probabilities at temperature T for every row, and
    the loss that mixes them with the labels: weight * T^2 * KL(teacher_T || student_T) + (1 - weight) * CE.
    T^2 keeps the soft term's gradients on the scale of the hard one's."""

    probabilities: torch.Tensor  # (rows, labels), the teacher's at `temperature`, within the rows' allowed labels
    temperature: float
    weight: float

    def loss(self, logits: torch.Tensor, allowed: torch.Tensor, rows: Sequence[int],
             hard: torch.Tensor) -> torch.Tensor:
        student = masked_log_softmax(logits / self.temperature, allowed)
        teacher = self.probabilities[rows].to(logits.device)
        # labels outside the mask: the teacher gives them 0 and the student -inf; they add nothing
        kl = (torch.xlogy(teacher, teacher) - teacher * torch.where(teacher > 0, student, 0.0)).sum(1)
        return self.weight * self.temperature ** 2 * kl.mean() + (1 - self.weight) * hard


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


@dataclass
class Responses:
    """What every classifier job derives from the responses CSV and its config: labels, targets and folds,
    the question book, the prompts, and the trunk with its cached output for every prompt."""

    frame: pl.DataFrame
    labels: list[str]
    targets: np.ndarray
    folds: np.ndarray
    book: QuestionBook
    base: Path
    encoder: Any
    tokenizer: Any
    trunk: Trunk
    cache: TrunkCache
    data_hash: str
    cache_seconds: float

    @classmethod
    def prepare(cls, data: Path, cache_dir: Path, config: ClassifierConfig) -> Responses:
        """Read and fold the data, fit the book, and build (or reuse) the trunk cache under `cache_dir`."""
        frame = load_responses(data)
        labels = sorted(frame[LABEL].unique().to_list())
        index_of = {label: i for i, label in enumerate(labels)}
        targets = np.array([index_of[label] for label in frame[LABEL]], dtype=np.int64)
        folds = stratified_folds(frame[LABEL].to_numpy(), config.folds, config.seeds[0])
        book = QuestionBook.fit(frame)
        prompts = [build_prompt(book, q, t, a, e) for q, t, a, e in
                   frame.select(QUESTION, QUESTION_TEXT, ANSWER, EXPLANATION).iter_rows()]
        base = model_path(config.base_model)
        encoder, tokenizer = load_hf_encoder(base)
        device = resolve_device(config.device)
        trunk = Trunk(encoder, config.freeze_layers).to(device)
        cache_key = hash_json({"prompts": hash_json(prompts), "base": fingerprint(base),
                               "split": config.freeze_layers, "max_length": config.max_length})
        started = time.perf_counter()
        cache = TrunkCache.build(trunk, encoder.config.hidden_size, tokenizer, prompts, config.max_length,
                                 cache_dir / f"trunk-{cache_key[:16]}.npy", device)
        trunk.cpu()
        return cls(frame, labels, targets, folds, book, base, encoder, tokenizer, trunk, cache, hash_files([data]),
                   time.perf_counter() - started)

    def allowed(self, train: np.ndarray) -> np.ndarray:
        """(rows, labels) the labels each row may take, from a book fitted on the `train` rows only; a noisy
        training label outside its question's mask is allowed for that row, so it still trains."""
        book = QuestionBook.fit(self.frame[train])
        allowed = np.stack([book.allowed(q, a, self.labels)
                            for q, a in self.frame.select(QUESTION, ANSWER).iter_rows()])
        allowed[train, self.targets[train]] = True
        return allowed


def train_classifier(data: Path, out: Path, config: ClassifierConfig) -> Path:
    responses = Responses.prepare(data, out / CACHE, config)
    frame, labels, targets, folds, book = responses.frame, responses.labels, responses.targets, responses.folds, \
        responses.book
    encoder, tokenizer, trunk, cache, base = responses.encoder, responses.tokenizer, responses.trunk, \
        responses.cache, responses.base
    row_ids = frame[ROW].cast(pl.String).to_list()
    weights, flagged = train_weights(config, row_ids)
    data_hash = responses.data_hash
    seconds = {"trunk_cache": responses.cache_seconds}
    run_hash = hash_json({"config": config.to_dict(), "data": data_hash, "base": fingerprint(base)})
    with staging_dir(out, f"classifier-{run_hash[:12]}", keep_on_error=True) as work:
        oof = np.full((len(frame), len(labels)), np.nan, dtype=np.float32)
        figures: dict[str, Any] = {}
        member_dirs = []
        started = time.perf_counter()
        for fold in range(config.train_folds or config.folds):
            train, valid = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            allowed = responses.allowed(train)
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


# -- distillation --------------------------------------------------------------------------------------------

def teacher_logits(teacher: MisconceptionClassifier, cache: TrunkCache, path: Path) -> np.ndarray:
    """(members, rows, labels) float32 logits of every teacher member on every cached row, computed on the
    trunk cache (only the members' layers run) and kept at `path` for a resumed run."""
    if path.is_file():
        return np.load(path)
    members = teacher.torch_ensemble.members
    logits = np.empty((len(members), len(cache.offsets) - 1, len(teacher.labels)), dtype=np.float32)
    order = np.argsort(cache.lengths(), kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), 128):
            rows = order[start:start + 128]
            hidden, mask = cache.batch(rows.tolist())
            for index, member in enumerate(members):
                logits[index, rows] = member.eval()(hidden, mask).float().numpy()
    atomic_save_array(path, logits)
    return logits


def soft_targets(logits: np.ndarray, allowed: np.ndarray, config: DistilConfig) -> SoftTargets:
    """The teacher's probabilities at the temperature, each member's masked softmax averaged."""
    mask = torch.from_numpy(allowed)
    tempered = torch.stack([masked_log_softmax(torch.from_numpy(m) / config.temperature, mask).exp() for m in logits])
    return SoftTargets(tempered.mean(0), config.temperature, config.soft_weight)


class MemberStudent(Student):
    """One member learning the teacher members' tempered probabilities mixed with the labels."""

    kind, name, items, log = MisconceptionClassifier.KIND, "classifier", "rows", log
    figure = Figure("MAP@3", "map3", higher_is_better=True)

    def __init__(self, config: ClassifierConfig, responses: Responses, logits: np.ndarray, stored: pl.DataFrame,
                 distil_config: DistilConfig, teacher: MisconceptionClassifier) -> None:
        self.config, self.responses, self.logits, self.stored = config, responses, logits, stored
        self.distil_config, self.teacher = distil_config, teacher
        self.weights = np.ones(len(responses.frame), dtype=np.float32)  # soft targets: every row weighs 1
        self.metrics = {"teacher_members": len(logits)}

    def train(self, directory: Path, train: np.ndarray, valid: np.ndarray, fold: int | None) \
            -> tuple[np.ndarray, list[dict[str, Any]]]:
        responses, allowed = self.responses, self.responses.allowed(train)
        trainer = MemberTrainer(self.config, responses.encoder, responses.cache, responses.targets, allowed,
                                self.weights, train, valid, self.config.seeds[0], fold, directory,
                                soft_targets(self.logits, allowed, self.distil_config))
        member, predicted, history = trainer.run()
        member.save(directory)
        return predicted, history

    def scores(self, rows: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
        truth = self.responses.targets[rows]
        stored = teacher_oof(self.responses.frame, self.stored, len(self.responses.labels))
        return fold_map(truth, predicted), fold_map(truth, stored[rows])

    def served(self, directory: Path) -> MisconceptionClassifier:
        responses = self.responses
        member = Member.load(directory, responses.encoder)
        return MisconceptionClassifier(responses.book, responses.labels, Ensemble(
            responses.encoder, responses.trunk, responses.tokenizer, [member], self.config.max_length))

    def speed(self, distilled: MisconceptionClassifier) -> dict[str, float]:
        return served_speed(self.teacher, distilled, self.responses.frame, self.distil_config.speed_items)

    def params(self) -> dict[str, Any]:
        return self.config.to_dict()


def distil_classifier(teacher_path: str | Path, data: Path, out: Path, config: DistilConfig) -> Path:
    """One member in place of the teacher's ensemble: cross-fitted on its folds, compared on their rows with
    the teacher's stored out-of-fold figure, then (kept only) trained on every row and published."""
    teacher = MisconceptionClassifier.load(teacher_path)
    assert teacher.path is not None and teacher.manifest is not None
    manifest = teacher.manifest
    # refused at once when the teacher stored none
    stored = checked_teacher(teacher.path, manifest, data, oof_probabilities, "figures")
    params = {k: v for k, v in manifest.params.items() if k in ClassifierConfig.__dataclass_fields__}
    teacher_config = ClassifierConfig(**{**params, "seeds": tuple(params["seeds"])})
    student_config = dataclasses.replace(teacher_config, epochs=config.epochs or teacher_config.epochs,
                                         noisy="none", label_issues=None)  # soft targets: every row weighs 1
    responses = Responses.prepare(data, teacher.path.parent / CACHE, teacher_config)  # the teacher's trunk cache
    logits = teacher_logits(teacher, responses.cache, out / CACHE / f"teacher-{manifest.weights[:16]}.npy")
    student = MemberStudent(student_config, responses, logits, stored, config, teacher)
    return distil(student, teacher.path, manifest, out, config, responses.folds,
                  stored_rows(responses.frame, stored))


def stored_rows(frame: pl.DataFrame, stored: pl.DataFrame) -> np.ndarray:
    """Positions in `frame` of the rows the teacher's stored out-of-fold predictions cover."""
    covered = set(stored[ROW].cast(pl.String).to_list())
    return np.flatnonzero(np.array([row in covered for row in frame[ROW].cast(pl.String).to_list()]))


def teacher_oof(frame: pl.DataFrame, stored: pl.DataFrame, labels: int) -> np.ndarray:
    """(rows, labels) the teacher's stored out-of-fold probabilities in `frame`'s row order (NaN: not covered)."""
    result = np.full((len(frame), labels), np.nan, dtype=np.float32)
    position = {row: i for i, row in enumerate(frame[ROW].cast(pl.String).to_list())}
    for row, probabilities in zip(stored[ROW].cast(pl.String).to_list(), stored["probabilities"].to_list(),
                                  strict=True):
        result[position[row]] = probabilities
    return result


def served_speed(teacher: MisconceptionClassifier, student: MisconceptionClassifier, frame: pl.DataFrame,
                 count: int) -> dict[str, float]:
    """Responses per second of the teacher and the student on the same rows, as the service runs them."""
    rows = spread_rows(frame, count)
    responses = [Response(*row) for row in rows.select(QUESTION, QUESTION_TEXT, ANSWER, EXPLANATION).iter_rows()]
    return speed_against(teacher.probabilities, student.probabilities, responses, 8)
