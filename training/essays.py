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
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

import edurank
from edurank.artifacts import hash_files, hash_json, new_version, publish, staging_dir, write_manifest
from edurank.encoders import fingerprint, model_path
from edurank.errors import InputError
from essays.blend import fit_blend
from essays.data import ID, TEXT, TRAITS, clip_scores, load_essays, scores
from essays.evaluation import mcrmse, score_report
from essays.fast import FastConfig, FastModel, FeatureExtractor, dense_estimator, tfidf_estimator
from essays.model import POOLINGS, EssayModel
from essays.scorer import BLEND, FAST_DIR, FINETUNED, FOLDS_DIR, KIND, OOF
from essays.windows import Windows, WindowSpec, make_windows
from training.adversarial import FGM
from training.optim import (
    adamw_with_warmup,
    freeze_lower_layers,
    layerwise_groups,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from training.splits import check_train_folds, multilabel_folds

log = logging.getLogger(__name__)
PATHS = ("fast", "finetune")
LOSSES = ("rmse", "smoothl1")
CHECKPOINT, BEST, DONE = "checkpoint.pt", "best", "oof.npy"
CACHE = ".cache"  # under the artifact root: features shared by runs that differ only in what they fit


@dataclass
class FineTuneConfig:
    pooling: str = "mean"
    loss: str = "rmse"
    epochs: int = 3
    essays_per_batch: int = 8
    accumulation: int = 1
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    layer_decay: float = 0.9
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    dropout: float = 0.0
    fgm_epsilon: float = 0.0
    freeze_layers: int = 0
    evals_per_epoch: int = 2
    patience: int = 2
    mixed_precision: bool = True

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise InputError(f"--pooling {self.pooling}: choose one of {', '.join(POOLINGS)}")
        if self.loss not in LOSSES:
            raise InputError(f"--loss {self.loss}: choose one of {', '.join(LOSSES)}")
        if self.fgm_epsilon and self.freeze_layers:
            raise InputError("--fgm perturbs the word embeddings, which --freeze-layers freezes: use one of them")


@dataclass
class EssayConfig:
    base_model: str | None = None
    paths: tuple[str, ...] = ("fast",)
    folds: int = 5
    train_folds: int | None = None  # fine-tune only the first N folds (exploring); OOF covers those folds
    seed: int = 42
    windows: WindowSpec = field(default_factory=WindowSpec)
    fast: FastConfig = field(default_factory=FastConfig)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)

    def __post_init__(self) -> None:
        if not self.paths or set(self.paths) - set(PATHS):
            raise InputError(f"--paths {','.join(self.paths)}: choose from {', '.join(PATHS)}")
        check_train_folds(self.train_folds, self.folds)
        self.fast = dataclasses.replace(self.fast, windows=self.windows)  # one window layout for both paths

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "paths": list(self.paths), "windows": self.windows.to_dict(),
                "fast": self.fast.to_dict()}


def resolve_paths(choice: str) -> tuple[str, ...]:
    """--paths auto|fast|finetune|both: `auto` fine-tunes only where a GPU can do it in reasonable time."""
    if choice == "auto":
        return PATHS if torch.cuda.is_available() else ("fast",)
    return PATHS if choice == "both" else (choice,)


# -- fine-tuned path ----------------------------------------------------------------------------------------

def mcrmse_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The metric as a loss: mean over traits of the batch RMSE (eps keeps the sqrt's gradient finite)."""
    return torch.sqrt(((predicted - target) ** 2).mean(dim=0) + 1e-8).mean()


class FineTuneTrainer:
    """Fine-tunes one fold's model; checkpoints at every evaluation and keeps the best model in `work_dir`."""

    def __init__(self, config: EssayConfig, windows: Windows, targets: np.ndarray, train_rows: np.ndarray,
                 valid_rows: np.ndarray, work_dir: Path, label: str):
        self.config, self.tune = config, config.finetune
        self.windows, self.targets = windows, torch.from_numpy(targets)
        self.train_rows, self.valid_rows = train_rows, valid_rows
        self.work_dir, self.label = work_dir, label
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        seed_everything(config.seed)
        self.model = EssayModel.from_base(config.base_model, self.tune.pooling, config.windows, self.tune.dropout)
        regressor = self.model.regressor.to(self.device)
        freeze_lower_layers(regressor.encoder, self.tune.freeze_layers)
        with torch.no_grad():  # start from the training mean: the head learns deviations, not the scale
            regressor.head.bias.copy_(self.targets[train_rows].mean(dim=0))
        self.loss = mcrmse_loss if self.tune.loss == "rmse" else torch.nn.SmoothL1Loss(beta=0.25)
        self.fgm = FGM(regressor, self.tune.fgm_epsilon) if self.tune.fgm_epsilon else None
        use_amp = self.tune.mixed_precision and self.device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16) \
            if use_amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def autocast(self) -> torch.autocast:
        """Mixed precision on a GPU (bf16 where supported, else fp16 with loss scaling); a no-op on the CPU."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def batches(self, epoch: int) -> list[list[int]]:
        """This epoch's batches of training essays (window rows); the order depends only on seed and epoch,
        so a resumed run replays the same batches."""
        order = np.random.default_rng(self.config.seed * 1000 + epoch).permutation(self.train_rows)
        return self.windows.essay_batches(self.tune.essays_per_batch, order.tolist())

    def step_loss(self, rows: list[int]) -> torch.Tensor:
        essays = torch.unique_consecutive(torch.tensor([self.windows.essay[r] for r in rows]))
        with self.autocast():
            predicted = self.model.forward(self.windows, rows)
        return self.loss(predicted.float(), self.targets[essays].to(self.device)) / self.tune.accumulation

    def backward(self, rows: list[int]) -> float:
        loss = self.step_loss(rows)
        self.scaler.scale(loss).backward()
        if self.fgm is not None:
            self.fgm.attack()
            self.scaler.scale(self.step_loss(rows)).backward()
            self.fgm.restore()
        return float(loss.detach()) * self.tune.accumulation

    def evaluate(self) -> tuple[float, np.ndarray]:
        rows = [r for batch in self.windows.essay_batches(16, self.valid_rows.tolist()) for r in batch]
        subset = Windows([self.windows.ids[r] for r in rows], [self.windows.essay[r] for r in rows],
                         len(self.valid_rows))
        with self.autocast():
            predicted = self.model.predict(_renumbered(subset))
        self.model.regressor.train()
        return mcrmse(self.targets[self.valid_rows].numpy(), clip_scores(predicted)), predicted

    def run(self) -> tuple[EssayModel, np.ndarray, list[dict[str, float]]]:
        tune = self.tune
        regressor = self.model.regressor
        batches_per_epoch = len(self.batches(0))
        steps = math.ceil(batches_per_epoch / tune.accumulation) * tune.epochs
        groups = layerwise_groups(regressor, regressor.encoder, tune.learning_rate, tune.layer_decay,
                                  tune.head_learning_rate, tune.weight_decay)
        optimizer, scheduler = adamw_with_warmup(groups, tune.learning_rate, tune.weight_decay, tune.warmup_ratio,
                                                 steps)
        eval_at = {round(batches_per_epoch * (i + 1) / tune.evals_per_epoch) - 1 for i in range(tune.evals_per_epoch)}
        state: dict[str, Any] = {"epoch": 0, "batch": 0, "best": math.inf, "bad": 0, "history": []}
        checkpoint = load_checkpoint(self.work_dir / CHECKPOINT)
        if checkpoint is not None:
            regressor.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            self.scaler.load_state_dict(checkpoint["scaler"])
            state = checkpoint["state"]
            log.info("%s: resuming at epoch %d, batch %d (best MCRMSE %.4f)", self.label, state["epoch"] + 1,
                     state["batch"], state["best"])
        regressor.train()
        while state["epoch"] < tune.epochs and state["bad"] < tune.patience:
            epoch, batches = state["epoch"], self.batches(state["epoch"])
            bar = tqdm(range(state["batch"], len(batches)), desc=f"{self.label} epoch {epoch + 1}/{tune.epochs}",
                       unit="batch")
            losses: list[float] = []
            for index in bar:
                losses.append(self.backward(batches[index]))
                if (index + 1) % tune.accumulation == 0 or index + 1 == len(batches):
                    self.scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(regressor.parameters(), 1.0)
                    self.scaler.step(optimizer)
                    self.scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                if index in eval_at:
                    self.checkpoint_after_eval(state, epoch, index, len(batches), np.mean(losses), optimizer, scheduler)
                    if state["bad"] >= tune.patience:
                        log.info("%s: stopping early, no gain in %d evaluations", self.label, tune.patience)
                        break
        best = EssayModel.load(self.work_dir / BEST)
        best.regressor.to(self.device)
        return best, np.load(self.work_dir / BEST / "valid.npy"), state["history"]

    def checkpoint_after_eval(self, state: dict[str, Any], epoch: int, index: int, batches: int, loss: float,
                              optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        score, predicted = self.evaluate()
        state["history"].append({"epoch": round(epoch + (index + 1) / batches, 2), "loss": round(float(loss), 4),
                                 "mcrmse": round(score, 4)})
        log.info("%s: epoch %.2f  train loss %.4f  fold MCRMSE %.4f", self.label, epoch + (index + 1) / batches,
                 loss, score)
        if score < state["best"]:
            state["best"], state["bad"] = score, 0
            tmp = self.work_dir / f".{BEST}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self.model.save(tmp)
            np.save(tmp / "valid.npy", predicted)
            shutil.rmtree(self.work_dir / BEST, ignore_errors=True)
            tmp.replace(self.work_dir / BEST)
        else:
            state["bad"] += 1
        state["epoch"], state["batch"] = (epoch + 1, 0) if index + 1 == batches else (epoch, index + 1)
        save_checkpoint(self.work_dir / CHECKPOINT, {
            "model": self.model.regressor.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": self.scaler.state_dict(), "state": state})


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
        fold_dir = work / FOLDS_DIR / f"fold{fold}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        valid = np.flatnonzero(folds == fold)
        started = time.perf_counter()
        if (fold_dir / DONE).is_file():
            log.info("fold %d: finished in an earlier run", fold)
            predicted = np.load(fold_dir / DONE)
            history = json.loads((fold_dir / "history.json").read_text())
        else:
            trainer = FineTuneTrainer(config, windows, targets, np.flatnonzero(folds != fold), valid, fold_dir,
                                      f"fold {fold}")
            _, predicted, history = trainer.run()
            (fold_dir / "history.json").write_text(json.dumps(history))
            np.save(fold_dir / DONE, predicted)
            (fold_dir / CHECKPOINT).unlink(missing_ok=True)
        oof[valid] = predicted
        fold_dirs.append(fold_dir / BEST)
        figures[f"fold{fold}"] = {"mcrmse": round(mcrmse(targets[valid], clip_scores(predicted)), 4),
                                  "history": history, "seconds": round(time.perf_counter() - started, 1)}
    return oof, fold_dirs, figures


# -- fast path ----------------------------------------------------------------------------------------------

def fast_oof(config: EssayConfig, texts: Sequence[str], targets: np.ndarray, folds: np.ndarray, cache: Path) \
        -> tuple[dict[str, np.ndarray], FastModel]:
    """OOF scores of the fast members from fold fits, and the members refitted on every essay. The dense
    features are read from `cache` when an earlier run computed them (same data, encoder, windows, layers)."""
    extractor = FeatureExtractor.load(config.base_model, config.fast)
    if cache.is_file():
        log.info("fast path: features from %s", cache)
        dense = np.load(cache)
    else:
        log.info("fast path: encoding %d essays with the frozen encoder", len(texts))
        dense = extractor(texts)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache.with_name(f".{cache.name}"), dense)
        cache.with_name(f".{cache.name}").replace(cache)
    oof = {name: np.zeros_like(targets) for name in ("dense", "tfidf")}
    for fold in range(config.folds):
        train, valid = folds != fold, folds == fold
        oof["dense"][valid] = dense_estimator(config.fast).fit(dense[train], targets[train]).predict(dense[valid])
        train_texts = [texts[i] for i in np.flatnonzero(train)]
        valid_texts = [texts[i] for i in np.flatnonzero(valid)]
        oof["tfidf"][valid] = tfidf_estimator(config.fast).fit(train_texts, targets[train]).predict(valid_texts)
        log.info("fast path fold %d: dense %.4f, tfidf %.4f", fold, mcrmse(targets[valid], oof["dense"][valid]),
                 mcrmse(targets[valid], oof["tfidf"][valid]))
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
            seconds["fast"] = round(time.perf_counter() - started, 1)
        fold_dirs: list[Path] = []
        if "finetune" in config.paths:
            started = time.perf_counter()
            members[FINETUNED], fold_dirs, figures = finetune_folds(config, texts, targets, folds, work)
            seconds["finetune"] = round(time.perf_counter() - started, 1)
        covered = np.all([np.isfinite(p).all(axis=1) for p in members.values()], axis=0)
        blend = fit_blend({k: v[covered] for k, v in members.items()}, targets[covered])
        blended = clip_scores(blend.apply({k: np.nan_to_num(v) for k, v in members.items()}))
        report = {name: score_report(targets[covered], clip_scores(p[covered])) for name, p in members.items()}
        report["blend"] = score_report(targets[covered], blended[covered])
        log.info("OOF MCRMSE over %d essays: %s", int(covered.sum()),
                 ", ".join(f"{name} {figures_['mcrmse']:.4f}" for name, figures_ in report.items()))

        final = out / f".essays-{run_hash[:12]}.publish"
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir()
        if fast_model is not None:
            fast_model.save(final / FAST_DIR)
        for fold, fold_dir in enumerate(fold_dirs):
            shutil.copytree(fold_dir, final / FOLDS_DIR / f"fold{fold}", ignore=shutil.ignore_patterns("valid.npy"))
        (final / BLEND).write_text(json.dumps(blend.to_dict(), indent=2))
        write_oof(final / OOF, frame, folds, covered, members, blended)
        version = new_version(run_hash)
        write_manifest(final, {
            "kind": KIND, "version": version, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "edurank": edurank.__version__, "base_model": str(base), "fingerprint": fingerprint(base),
            "data": {"file": str(data), "hash": data_hash, "essays": len(frame)},
            "params": config.to_dict(), "traits": list(TRAITS),
            "metrics": {"oof_essays": int(covered.sum()), "oof": report, "folds": figures,
                        "train_seconds": seconds},
        })
        path = publish(final, out, version)
    shutil.rmtree(work, ignore_errors=True)
    return path


def write_oof(path: Path, frame: pl.DataFrame, folds: np.ndarray, covered: np.ndarray,
              members: dict[str, np.ndarray], blended: np.ndarray) -> None:
    """One row per essay: its fold, whether the blend's OOF covers it, each member's and the blend's scores."""
    columns: dict[str, Any] = {ID: frame[ID], "fold": folds, "covered": covered}
    for name, values in {**members, "blend": blended}.items():
        columns.update({f"{name}_{trait}": values[:, j] for j, trait in enumerate(TRAITS)})
    pl.DataFrame(columns).write_parquet(path)

