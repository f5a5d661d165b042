"""`edurank train essays`: the six-trait essay scorer, cross-validated over multilabel-stratified folds.

Two paths, blended:
- fast (CPU, minutes): frozen-encoder features + text statistics -> SVR, and TF-IDF -> ridge. Out-of-fold
  (OOF) predictions come from fold fits; the served members are refitted on every essay.
- fine-tuned: the encoder with a pooling layer and a six-output head, trained per fold with layer-wise
  learning-rate decay, optional FGM, gradient accumulation, mixed precision on a GPU, and early stopping on
  the fold's MCRMSE. The fold models are the served ensemble (averaged), their held-out scores the OOF.
Blend weights per trait are fitted on the OOF predictions of the members trained.

The frozen-encoder features are cached under `<out>/.cache/` (keyed by data, encoder, windows and layers), so
runs that change only the regressors or the fine-tuning reuse them. The run's staging directory keeps each
fold's checkpoint and finished folds' OOF scores, so rerunning the same command resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from transformers import AutoTokenizer

from edurank.artifacts import (
    ModelRef,
    atomic_save_array,
    fresh_dir,
    hash_files,
    hash_json,
    publish_artifact,
    staging_dir,
)
from edurank.backends.export import spread_rows
from edurank.encoders import fingerprint, model_path
from edurank.essays.blend import Blend, fit_blend
from edurank.essays.data import ID, TEXT, TRAITS, clip_scores, load_essays, scores
from edurank.essays.evaluation import mcrmse, score_report
from edurank.essays.fast import FastModel, FeatureExtractor, dense_estimator, tfidf_estimator
from edurank.essays.model import EssayModel
from edurank.essays.scorer import FINETUNED, OOF, EssayScorer, essay_artifact, oof_predictions
from edurank.essays.windows import Windows, make_windows
from edurank.folds import multilabel_folds
from edurank.training.adversarial import FGM
from edurank.training.config import DistilConfig, EssayConfig
from edurank.training.distil import Figure, Student, checked_teacher, distil, speed_against
from edurank.training.loop import (
    FoldResult,
    Loop,
    adamw_with_warmup,
    encoder_stack,
    freeze_lower_layers,
    layerwise_groups,
    optimizer_steps,
    resolve_device,
    run_fold,
    seed_everything,
)

log = logging.getLogger(__name__)
BEST = "best"
CACHE = ".cache"  # under the artifact root: features shared by runs that differ only in what they fit


# -- fine-tuned path ----------------------------------------------------------------------------------------

def mcrmse_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The metric as a loss: mean over traits of the batch RMSE (eps keeps the sqrt's gradient finite)."""
    return torch.sqrt(((predicted - target) ** 2).mean(dim=0) + 1e-8).mean()


class FineTuneTrainer:
    """Fine-tunes one fold's model on the shared loop; keeps the best model (by fold MCRMSE) in `work_dir`."""

    def __init__(self, config: EssayConfig, windows: Windows, targets: np.ndarray, train_rows: np.ndarray,
                 valid_rows: np.ndarray, work_dir: Path, label: str, truth: np.ndarray | None = None):
        """`targets` are what the model learns (a distilled student's: the teacher's scores mixed with the
        labels); held-out essays are judged against `truth` (default: the targets)."""
        self.config, self.tune = config, config.finetune
        self.windows, self.targets = windows, torch.from_numpy(targets)
        self.truth = truth if truth is not None else targets
        self.train_rows, self.valid_rows = train_rows, valid_rows
        self.work_dir, self.label = work_dir, label
        self.device = resolve_device(config.device)
        seed_everything(config.seed)
        self.model = EssayModel.from_base(config.base_model, self.tune.pooling, config.windows, self.tune.dropout)
        regressor = self.model.torch_regressor.to(self.device)
        freeze_lower_layers(regressor.encoder, self.tune.freeze_layers)
        with torch.no_grad():  # start from the training mean: the head learns deviations, not the scale
            regressor.head.bias.copy_(self.targets[train_rows].mean(dim=0))
        self.loss = mcrmse_loss if self.tune.loss == "rmse" else torch.nn.SmoothL1Loss(beta=0.25)
        groups = layerwise_groups(regressor, encoder_stack(regressor.encoder), self.tune.learning_rate,
                                  self.tune.layer_decay, self.tune.head_learning_rate, config.weight_decay)
        steps = optimizer_steps(len(self.batches(0)), self.tune.epochs, self.tune.accumulation)
        optimizer, scheduler = adamw_with_warmup(groups, self.tune.learning_rate, config.weight_decay,
                                                 config.warmup_ratio, steps)
        fgm = FGM(regressor, self.tune.fgm_epsilon) if self.tune.fgm_epsilon else None
        self.loop: Loop[list[int]] = Loop(regressor, optimizer, scheduler, self.device, work_dir, label,
                                          config.mixed_precision, self.tune.accumulation, adversary=fgm)
        self.loop.state.extra = {"best": math.inf, "bad": 0}

    def batches(self, epoch: int) -> list[list[int]]:
        """This epoch's batches of training essays (window rows); the order depends only on seed and epoch."""
        order = np.random.default_rng(self.config.seed * 1000 + epoch).permutation(self.train_rows)
        return self.windows.essay_batches(self.tune.essays_per_batch, order.tolist())

    def step_loss(self, rows: list[int]) -> torch.Tensor:
        essays = torch.unique_consecutive(torch.tensor([self.windows.essay[r] for r in rows]))
        predicted = self.model.forward(self.windows, rows)
        return self.loss(predicted.float(), self.targets[essays].to(self.device))

    def evaluate(self) -> dict[str, Any]:
        """The fold's MCRMSE; a new best model is kept (with its held-out scores) and resets the patience.
        Without held-out essays (a student trained on every essay) the latest model is kept."""
        if not len(self.valid_rows):
            self.keep(np.empty((0, len(TRAITS)), dtype=np.float32))
            return {}
        rows = [r for batch in self.windows.essay_batches(16, self.valid_rows.tolist()) for r in batch]
        subset = Windows([self.windows.ids[r] for r in rows], [self.windows.essay[r] for r in rows],
                         len(self.valid_rows))
        with self.loop.autocast():
            predicted = self.model.predict(_renumbered(subset))
        score = mcrmse(self.truth[self.valid_rows], clip_scores(predicted))
        extra = self.loop.state.extra
        if score < extra["best"] or not (self.work_dir / BEST).is_dir():  # the first one is kept even if NaN
            extra["best"], extra["bad"] = score, 0
            self.keep(predicted)
        else:
            extra["bad"] += 1
        return {"mcrmse": round(score, 4)}

    def keep(self, predicted: np.ndarray) -> None:
        """The current model and its held-out scores become `best` (replaced whole, never half-written)."""
        tmp = fresh_dir(self.work_dir / f".{BEST}.tmp")
        self.model.save(tmp)
        np.save(tmp / "valid.npy", predicted)
        shutil.rmtree(self.work_dir / BEST, ignore_errors=True)
        tmp.replace(self.work_dir / BEST)

    def run(self) -> tuple[EssayModel, np.ndarray, list[dict[str, Any]]]:
        """Train to the last epoch or until `patience` evaluations bring no gain; the best model, its held-out
        scores and the history."""
        state = self.loop.fit(self.tune.epochs, self.batches, self.step_loss, self.evaluate, self.tune.evals_per_epoch,
                              stop=lambda state: state.extra["bad"] >= self.tune.patience)
        return EssayModel.load(self.work_dir / BEST), np.load(self.work_dir / BEST / "valid.npy"), state.history


def _renumbered(windows: Windows) -> Windows:
    """The same windows with essays numbered 0..n-1 in order of appearance."""
    mapping: dict[int, int] = {}
    return Windows(windows.ids, [mapping.setdefault(e, len(mapping)) for e in windows.essay], windows.essays)


def finetune_folds(config: EssayConfig, texts: Sequence[str], targets: np.ndarray, folds: np.ndarray,
                   work: Path) -> tuple[np.ndarray, list[Path], dict[str, Any]]:
    """Train (or resume) each fold's model; returns OOF scores (NaN for folds not trained), the best fold
    model directories, and per-fold figures."""
    oof = np.full(targets.shape, np.nan, dtype=np.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path(config.base_model), local_files_only=True)
    windows = make_windows(tokenizer, texts, config.windows)
    fold_dirs, figures = [], {}
    for fold in range(config.train_folds or config.folds):
        valid = np.flatnonzero(folds == fold)

        def train(directory: Path, fold: int = fold, valid: np.ndarray = valid) \
                -> tuple[np.ndarray, list[dict[str, Any]]]:
            trainer = FineTuneTrainer(config, windows, targets, np.flatnonzero(folds != fold), valid, directory,
                                      f"fold {fold}")
            return trainer.run()[1:]

        result = run_fold(work / "folds" / f"fold{fold}", f"fold {fold}", train)
        oof[valid] = result.predictions
        fold_dirs.append(result.directory / BEST)
        figures[f"fold{fold}"] = {"mcrmse": round(mcrmse(targets[valid], clip_scores(result.predictions)), 4),
                                  "history": result.history, "seconds": result.seconds}
    return oof, fold_dirs, figures


# -- fast path ----------------------------------------------------------------------------------------------

def fast_oof(config: EssayConfig, texts: Sequence[str], targets: np.ndarray, folds: np.ndarray, cache: Path) \
        -> tuple[dict[str, np.ndarray], FastModel]:
    """OOF scores of the fast members from fold fits, and the members refitted on every essay. The dense
    features are read from `cache` when an earlier run computed them (same data, encoder, windows, layers)."""
    extractor = FeatureExtractor.load(config.base_model, config.fast)
    extractor.encoder.to(resolve_device(config.device))  # the frozen encoder on the GPU when there is one
    if cache.is_file():
        log.info("fast path: features from %s", cache)
        dense = np.load(cache)
    else:
        log.info("fast path: encoding %d essays with the frozen encoder", len(texts))
        dense = extractor(texts)
        atomic_save_array(cache, dense)
    oof = {name: np.zeros_like(targets) for name in ("dense", "tfidf")}
    for fold in range(config.folds):
        train, valid = folds != fold, folds == fold
        oof["dense"][valid] = dense_estimator(config.fast).fit(dense[train], targets[train]).predict(dense[valid])
        train_texts = [texts[i] for i in np.flatnonzero(train)]
        valid_texts = [texts[i] for i in np.flatnonzero(valid)]
        oof["tfidf"][valid] = tfidf_estimator(config.fast).fit(train_texts, targets[train]).predict(valid_texts)
        log.info("fast path fold %d: dense %.4f, tfidf %.4f", fold, mcrmse(targets[valid], oof["dense"][valid]),
                 mcrmse(targets[valid], oof["tfidf"][valid]))
    extractor.encoder.cpu()
    return oof, FastModel.fit(extractor, texts, dense, targets)


# -- the run ------------------------------------------------------------------------------------------------

def train_essays(data: Path, out: Path, config: EssayConfig) -> Path:
    frame = load_essays(data)
    texts, targets = frame[TEXT].to_list(), scores(frame)
    folds = multilabel_folds(targets, config.folds, config.seed)
    base = model_path(config.base_model)
    data_hash = hash_files([data])
    run_hash = hash_json({"config": config.to_dict(), "data": data_hash, "base": fingerprint(base)})
    seconds: dict[str, float] = {}
    with staging_dir(out, f"essays-{run_hash[:12]}", keep_on_error=True) as work:
        members: dict[str, np.ndarray] = {}
        fast_model, figures = None, {}
        if "fast" in config.paths:
            started = time.perf_counter()
            feature_key = hash_json({"data": data_hash, "base": fingerprint(base), "layers": list(config.fast.layers),
                                     "windows": config.windows.to_dict()})
            cache = out / CACHE / f"fast-features-{feature_key[:16]}.npy"
            fast_members, fast_model = fast_oof(config, texts, targets, folds, cache)
            members.update(fast_members)
            seconds["fast"] = time.perf_counter() - started
        fold_dirs: list[Path] = []
        if "finetune" in config.paths:
            started = time.perf_counter()
            members[FINETUNED], fold_dirs, figures = finetune_folds(config, texts, targets, folds, work)
            seconds["finetune"] = time.perf_counter() - started
        covered = np.all([np.isfinite(p).all(axis=1) for p in members.values()], axis=0)
        blend = fit_blend({k: v[covered] for k, v in members.items()}, targets[covered])
        blended = clip_scores(blend.apply({k: np.nan_to_num(v) for k, v in members.items()}))
        report = {name: score_report(targets[covered], clip_scores(p[covered])) for name, p in members.items()}
        report["blend"] = score_report(targets[covered], blended[covered])
        log.info("OOF MCRMSE over %d essays: %s", int(covered.sum()),
                 ", ".join(f"{name} {figures_['mcrmse']:.4f}" for name, figures_ in report.items()))

        scorer = EssayScorer(fast_model, [EssayModel.load(d) for d in fold_dirs], blend)
        final = fresh_dir(work / "artifact")
        scorer.save(final)
        write_oof(final / OOF, frame, folds, covered, members, blended)
        return publish_artifact(
            final, out, run_hash, kind=EssayScorer.KIND, base_model=ModelRef(str(base), fingerprint(base)),
            data={"hash": data_hash, "files": [str(data)], "essays": len(frame)},
            params=config.to_dict(), seconds=seconds, details={"traits": list(TRAITS)},
            metrics={"oof_essays": int(covered.sum()), "oof": report, "folds": figures})


def write_oof(path: Path, frame: pl.DataFrame, folds: np.ndarray, covered: np.ndarray,
              members: dict[str, np.ndarray], blended: np.ndarray) -> None:
    """One row per essay: its fold, whether the blend's OOF covers it, each member's and the blend's scores."""
    columns: dict[str, Any] = {ID: frame[ID], "fold": folds, "covered": covered}
    for name, values in {**members, "blend": blended}.items():
        columns.update({f"{name}_{trait}": values[:, j] for j, trait in enumerate(TRAITS)})
    pl.DataFrame(columns).write_parquet(path)



# -- distillation -------------------------------------------------------------------------------------------

class EssayStudent(Student):
    """One fine-tuned model learning the teacher's blended out-of-fold scores mixed with the labels."""

    kind, name, items, log = EssayScorer.KIND, "essay scorer", "essays", log
    figure = Figure("MCRMSE", "mcrmse", higher_is_better=False)
    details = {"traits": list(TRAITS)}

    def __init__(self, config: EssayConfig, windows: Windows, targets: np.ndarray, truth: np.ndarray,
                 soft: np.ndarray, teacher: Path, sample: list[str]) -> None:
        self.config, self.windows, self.targets, self.truth, self.soft = config, windows, targets, truth, soft
        self.teacher, self.sample = teacher, sample

    def train(self, directory: Path, train: np.ndarray, valid: np.ndarray, fold: int | None) \
            -> tuple[np.ndarray, list[dict[str, Any]]]:
        label = "student" if fold is None else f"student fold {fold}"
        return FineTuneTrainer(self.config, self.windows, self.targets, train, valid, directory, label,
                               self.truth).run()[1:]

    def before_final(self, folds: Sequence[FoldResult]) -> None:
        # the folds kept their best evaluation; the student on every essay, with none held out, trains as long
        best_epochs = [min(fold.history, key=lambda entry: entry["mcrmse"])["epoch"] for fold in folds]
        self.config = dataclasses.replace(self.config, finetune=dataclasses.replace(
            self.config.finetune, epochs=max(1, math.ceil(float(np.median(best_epochs))))))

    def scores(self, rows: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
        return mcrmse(self.truth[rows], clip_scores(predicted)), mcrmse(self.truth[rows], self.soft[rows])

    def served(self, directory: Path) -> EssayScorer:
        return EssayScorer(None, [EssayModel.load(directory / BEST)], Blend([FINETUNED], np.ones((len(TRAITS), 1))))

    def speed(self, distilled: EssayScorer) -> dict[str, float]:
        return speed_against(EssayScorer.load(self.teacher).score, distilled.score, self.sample, 2)

    def params(self) -> dict[str, Any]:
        return self.config.to_dict()


def distil_essays(teacher_path: str | Path, data: Path, out: Path, config: DistilConfig) -> Path:
    """One fine-tuned model in place of the teacher's fast path, fold models and blend. It learns the teacher's
    blended out-of-fold scores mixed with the labels (`soft_weight`; MSE-like, the trainer's loss), is
    cross-fitted on the teacher's folds and compared on their essays with the teacher's blend, then (kept
    only) trained on every essay and published as a scorer of that one model."""
    path, manifest = essay_artifact(teacher_path)
    # the covered essays' blended scores; refused at once when there are none
    stored = checked_teacher(path, manifest, data, oof_predictions, "scores")
    teacher_config = EssayConfig.from_dict(manifest.params)
    student_config = dataclasses.replace(teacher_config, paths=("finetune",), finetune=dataclasses.replace(
        teacher_config.finetune, epochs=config.epochs or teacher_config.finetune.epochs))
    frame = load_essays(data)
    texts, truth = frame[TEXT].to_list(), scores(frame)
    folds = multilabel_folds(truth, teacher_config.folds, teacher_config.seed)
    position = {essay: i for i, essay in enumerate(frame[ID].to_list())}
    covered = np.array([position[essay] for essay in stored[ID].to_list()])
    soft = truth.copy()
    soft[covered] = stored.select([f"blend_{trait}" for trait in TRAITS]).to_numpy()
    targets = (config.soft_weight * soft + (1 - config.soft_weight) * truth).astype(np.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path(student_config.base_model), local_files_only=True)
    windows = make_windows(tokenizer, texts, student_config.windows)
    sample = spread_rows(frame, config.speed_items)[TEXT].to_list()
    student = EssayStudent(student_config, windows, targets, truth, soft, path, sample)
    return distil(student, path, manifest, out, config, folds, covered)
