"""Every training job's options, light to import: the config dataclasses `edurank train <job>` and `edurank
quickstart` generate their flags from (edurank/options.py), the options they share and the choices they offer.

Nothing here imports torch, transformers, sentence-transformers, LightGBM, scikit-learn or polars (the nested
configs come from each family's own light `config` module), so the CLI builds its parser, and answers `--help`,
at once; each trainer imports its config from here. What needs a heavy library (asking torch for a GPU, the
booster's parameters) imports it when called.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from edurank.errors import InputError
from edurank.essays.config import POOLINGS, FastConfig, WindowSpec
from edurank.folds import check_train_folds
from edurank.options import option
from edurank.reranker.lightgbm.config import DEFAULT_GROUPS, FEATURE_GROUPS
from edurank.retriever.config import DEFAULT_KS, CandidateConfig

if TYPE_CHECKING:
    from edurank.reranker.cross_encoder.model import PairFormat

DEVICES = ("auto", "cpu", "cuda")
GROUP_BY_HELP = ("topics sharing this key share a fold: a topics column (title: a question's wrong answers; "
                 "parent), construct or subject (named in the description), or COLUMN~REGEX")


# -- shared by several jobs ---------------------------------------------------------------------------------

@dataclass
class EngineOptions:
    """The loop's own options (where it runs, the optimiser's schedule); every trainer's config includes them."""

    device: str = option("auto", "auto: CUDA when present, else the CPU; cpu or cuda to force one", choices=DEVICES)
    mixed_precision: bool = option(True, "bf16 autocast on a GPU that has it, else fp16 with a grad scaler "
                                         "(never on the CPU)")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup_ratio: float = option(0.1, "share of the optimiser steps spent warming up (per round: retriever)")


@dataclass
class CrossFitOptions:
    """Which candidates each topic gets and how topics are cut into folds for cross-fitting; the same values
    give the same rows and folds in every job that takes them."""

    candidates: CandidateConfig = option(factory=CandidateConfig)
    folds: int = option(5, "topic folds for cross-fitting", minimum=2)
    fold: int | None = option(None, "hold this fold out entirely, for `evaluate recommend --fold`")
    group_by: str | None = option(None, GROUP_BY_HELP, metavar="KEY")
    hold_out_items: float = option(0.0, "share of each held-out fold's items no training topic may link",
                                   minimum=0)
    seed: int = option(42, "seed of folds, sampling and initialisation")

    def cross_fit_params(self) -> dict[str, object]:
        """What decides the rows and folds: equal between two jobs, their out-of-fold scores line up."""
        return {"candidates": asdict(self.candidates), **{name: getattr(self, name) for name in (
            "folds", "fold", "group_by", "hold_out_items", "seed")}}


# -- train retriever ----------------------------------------------------------------------------------------

@dataclass
class RetrieverConfig(EngineOptions):
    """Everything that changes the trained model; hashed to name the run (and find its checkpoint)."""

    base_model: str | None = option(None, "start from this local ST/HF dir (default: bundled MiniLM)", flag="--model")
    rounds: int = option(2, "hard-negative rounds after the first", minimum=0)
    epochs: int = option(3, "epochs of the in-batch round", minimum=1)
    hard_negative_epochs: int = option(2, "epochs of each hard-negative round", minimum=1)
    batch_size: int = option(64, "pairs per batch (one language each)", minimum=2)
    learning_rate: float = option(5e-5, "peak learning rate", flag="--lr")
    max_tokens: int = option(128, "tokens per topic or item text while training, and as the trained retriever "
                                  "serves them (at most the base model's own limit: 256 for MiniLM)", minimum=8)
    scale: float = option(20.0, "inverse temperature of the contrastive softmax")
    symmetric: bool = option(False, "add the item->topic direction to the loss")
    cluster_size: int = option(0, "build batches from k-means clusters of about this many similar topics (0: off)",
                               minimum=0)
    top_n: int = option(50, "mine negatives from this top-N", minimum=1)
    margin: float = option(0.95, "skip candidates scoring above margin x the gold item's score")
    freeze_layers: int = option(0, "freeze embeddings + this many lower layers", minimum=0)
    folds: int = option(5, "topic folds (grouped by topic, stratified by language)", minimum=2)
    fold: int | None = option(None, "hold this fold out (default: train on every topic)")
    group_by: str | None = option(None, GROUP_BY_HELP, metavar="KEY")
    hold_out_items: float = option(0.0, "share of the held-out fold's items no training topic may link", minimum=0)
    seed: int = option(42, "seed of folds, batches and initialisation")
    eval_ks: tuple[int, ...] = option(DEFAULT_KS, "k of the recall@k figures recorded at each evaluation")

    def epochs_in(self, round_: int) -> int:
        return self.epochs if round_ == 0 else self.hard_negative_epochs


# -- train reranker -----------------------------------------------------------------------------------------

RERANKER_LOSSES = ("bce", "listwise")
INITS = ("model", "miners")


@dataclass
class RerankerConfig(CrossFitOptions, EngineOptions):
    """Everything that changes the trained model; hashed (with the data and retrievers) to name the run."""

    base_model: str | None = option(None, "start from this local HF/ST dir (default: bundled MiniLM)", flag="--model")
    init: str = option("model", "fold models start from --model, or (miners) each from the fold retriever that "
                                "mined its held-out fold", choices=INITS)
    loss: str = option("bce", "bce: a probability per pair; listwise: each positive against its topic's hard "
                              "negatives (softmax cross-entropy)", choices=RERANKER_LOSSES)
    hard_negatives: int = option(16, "negatives a topic may train on: its H most similar candidates by dense "
                                     "cosine (0: all)", minimum=0)
    negatives: int = option(8, "negatives drawn each epoch from the hard ones, per topic (bce) or per positive "
                               "(listwise); 0: all", minimum=0)
    pos_weight: float | None = option(None, "BCE weight of positives (default: negatives / positives seen per epoch)")
    epochs: int = option(2, "epochs over the sampled pairs", minimum=1)
    batch_size: int = option(32, "pairs per batch", minimum=1)
    learning_rate: float = option(1e-4, "peak learning rate", flag="--lr")
    topic_tokens: int = option(32, "tokens of the topic side of a pair", minimum=1)
    content_tokens: int = option(64, "tokens of the content side of a pair", minimum=1)
    rank_feature: bool = option(False, "write the retrieval rank into the pair")
    layers: int | None = option(None, "keep only the start model's lower N layers: a smaller, faster "
                                      "cross-encoder (default: all)", minimum=1)
    freeze_layers: int = option(4, "frozen embeddings + lower layers, their output cached (0: train every layer, "
                                   "no cache)", minimum=0)
    late_interaction: bool = option(False, "the frozen lower layers read each text alone (what the retriever "
                                           "computes); only the trained layers attend across the pair")
    cross_fit: bool = option(True, "train fold models for OOF scores (off: faster; calibration by prior "
                                   "correction, rule untuned)")
    train_folds: int | None = option(None, "cross-fit only the first N folds (exploring; figures cover those)",
                                     minimum=2)

    @property
    def pair_format(self) -> PairFormat:
        from edurank.reranker.cross_encoder.model import PairFormat

        return PairFormat(self.topic_tokens, self.content_tokens, self.rank_feature)


# -- train ranker -------------------------------------------------------------------------------------------

OBJECTIVES = ("binary", "lambdarank")


def parse_groups(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass
class RankerConfig(CrossFitOptions):
    """Everything that changes the trained ranker; hashed (with the data and retrievers) to name the run."""

    objective: str = option("lambdarank", "lambdarank: each topic's order (the default: it keeps items no training "
                                          "topic links above retrieval alone); binary: a probability per pair",
                            choices=OBJECTIVES)
    groups: tuple[str, ...] = option(DEFAULT_GROUPS, f"feature groups ({', '.join(FEATURE_GROUPS)}; companion "
                                                     "needs --companion, cross --cross-encoder)", parse=parse_groups)
    companion: str | None = option(None, "a second encoder ('bundled' or a model directory) whose cosine is the "
                                         "companion group; the served index must hold its vectors (`edurank index "
                                         "--companion`)", metavar="MODEL")
    cross_encoder: str | None = option(None, "a reranker cross-fitted on the same candidates and folds "
                                             "(`train reranker`): its out-of-fold logits are the cross group",
                                       metavar="RERANKER")
    feedback: str | None = option(None, "a curator's decisions to train on: a feedback store (SQLite file or "
                                        "SQLAlchemy URL) or an `edurank feedback export` folder; accepted pairs "
                                        "become links (positives, and graph links for other topics), rejected ones "
                                        "negatives (overriding the catalog's links)", metavar="DB_OR_EXPORT")
    trees: int = option(300, "boosting rounds", minimum=1)
    learning_rate: float = option(0.05, "shrinkage per round", flag="--lr")
    leaves: int = option(7, "leaves per tree", minimum=2)
    min_child_samples: int = option(50, "rows per leaf at least", minimum=1)

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in FEATURE_GROUPS]
        if unknown or not self.groups:
            raise ValueError(f"--groups: unknown {unknown or 'none given'}; choose from {', '.join(FEATURE_GROUPS)}")
        for group, model, flag in (("companion", self.companion, "--companion"),
                                   ("cross", self.cross_encoder, "--cross-encoder")):
            if model is not None and group not in self.groups:
                self.groups = (*self.groups, group)
            if group in self.groups and model is None:
                raise ValueError(f"--groups {group}: give the model whose scores it reads ({flag})")

    def params(self) -> dict[str, Any]:
        """LightGBM's parameters (this process's torch thread count included)."""
        import torch

        from edurank.reranker.lightgbm.features import MONOTONE_INCREASING, feature_names

        names = feature_names(self.groups)
        params: dict[str, Any] = {
            "objective": self.objective, "learning_rate": self.learning_rate, "num_leaves": self.leaves,
            "min_child_samples": self.min_child_samples, "feature_fraction": 0.9, "bagging_fraction": 0.9,
            "bagging_freq": 1, "lambda_l2": 1.0, "seed": self.seed, "deterministic": True,
            "num_threads": torch.get_num_threads(), "verbose": -1,
            "monotone_constraints": [1 if n in MONOTONE_INCREASING else 0 for n in names],
            "monotone_constraints_method": "advanced"}
        if self.objective == "lambdarank":
            params["lambdarank_truncation_level"] = 32
        return params


# -- train recommend ----------------------------------------------------------------------------------------

@dataclass
class RecommendConfig:
    """`edurank train recommend`: the fold retrievers, the served retriever, its index and the ranker (and
    optionally the cross-encoder) in one job. Its retriever defaults are `train retriever --rounds 0
    --freeze-layers 2 --lr 1e-4`, so fold retrievers trained that way by hand are found finished."""

    base_model: str | None = option(None, "the retrievers' start: a local ST/HF dir (default: bundled MiniLM)",
                                    flag="--model")
    folds: int = option(5, "topic folds: one fold retriever each, and the ranker's cross-fitting", minimum=2)
    group_by: str | None = option(None, GROUP_BY_HELP, metavar="KEY")
    hold_out_items: float = option(0.0, "share of each held-out fold's items no training topic may link", minimum=0)
    seed: int = option(42, "seed of folds, batches and initialisation")
    device: str = option("auto", "where every trainer runs: auto (CUDA when present, else the CPU), cpu or cuda",
                         choices=DEVICES)
    retriever_rounds: int = option(0, "hard-negative rounds of each retriever after the in-batch one", minimum=0)
    retriever_epochs: int = option(3, "epochs of each retriever's in-batch round", minimum=1)
    retriever_hard_negative_epochs: int = option(2, "epochs of each retriever's hard-negative rounds", minimum=1)
    retriever_lr: float = option(1e-4, "the retrievers' peak learning rate")
    retriever_freeze_layers: int = option(2, "the retrievers' frozen embeddings + lower layers", minimum=0)
    retriever_max_tokens: int = option(128, "tokens per topic or item text while the retrievers train, and as the "
                                            "served one serves them", minimum=8)
    candidates: CandidateConfig = option(factory=CandidateConfig)
    objective: str = option("lambdarank", "the ranker's objective (see `train ranker`)", choices=OBJECTIVES)
    groups: tuple[str, ...] = option(DEFAULT_GROUPS, "the ranker's feature groups (companion needs --companion, "
                                                     "cross --with-cross-encoder)", parse=parse_groups)
    companion: str | None = option(None, "a second encoder ('bundled' or a model directory) whose cosine is the "
                                         "ranker's companion group; the index stores its vectors", metavar="MODEL")
    with_cross_encoder: bool = option(False, "also train the cross-encoder (`train reranker --init miners`, "
                                             "cross-fitted on the ranker's candidates; hours on a CPU), read by the "
                                             "ranker's cross group")

    def __post_init__(self) -> None:
        if "cross" in self.groups and not self.with_cross_encoder:
            raise ValueError("--groups cross: it reads the cross-encoder this job trains (--with-cross-encoder)")
        self.ranker("cross-encoder" if self.with_cross_encoder else None)  # refuses groups it could not train

    def split(self) -> dict[str, Any]:
        return {"folds": self.folds, "group_by": self.group_by, "hold_out_items": self.hold_out_items,
                "seed": self.seed}

    def retriever(self, fold: int | None) -> RetrieverConfig:
        """Fold `fold`'s retriever, or (None) the served one, trained on every topic: it reads no split, so its
        split options keep their defaults and another split reuses it."""
        split = self.split() if fold is not None else {"seed": self.seed}
        return RetrieverConfig(base_model=self.base_model, rounds=self.retriever_rounds, epochs=self.retriever_epochs,
                               hard_negative_epochs=self.retriever_hard_negative_epochs,
                               learning_rate=self.retriever_lr, freeze_layers=self.retriever_freeze_layers,
                               max_tokens=self.retriever_max_tokens, device=self.device, fold=fold, **split)

    def reranker(self, served: str) -> RerankerConfig:
        """The cross-encoder: the served one starts from the served retriever, each fold's from its miner."""
        return RerankerConfig(base_model=served, init="miners", candidates=self.candidates, device=self.device,
                              **self.split())

    def ranker(self, cross_encoder: str | None) -> RankerConfig:
        return RankerConfig(candidates=self.candidates, objective=self.objective, groups=self.groups,
                            companion=self.companion, cross_encoder=cross_encoder, **self.split())


# -- train essays -------------------------------------------------------------------------------------------

PATHS = ("fast", "finetune")
ESSAY_LOSSES = ("rmse", "smoothl1")


@dataclass
class FineTuneConfig:
    pooling: str = option("mean", "how a window's tokens become one vector", choices=POOLINGS)
    loss: str = option("rmse", "training loss", choices=ESSAY_LOSSES)
    epochs: int = option(3, "epochs per fold", minimum=1)
    essays_per_batch: int = option(8, "essays per batch (all their windows)", flag="--batch-size", minimum=1)
    accumulation: int = option(1, "batches per optimizer step", minimum=1)
    learning_rate: float = option(5e-5, "learning rate of the top encoder layer", flag="--lr")
    head_learning_rate: float = option(1e-3, "learning rate of pooling and head", flag="--head-lr")
    layer_decay: float = option(0.9, "LLRD: each layer down trains at this x the one above")
    dropout: float = option(0.0, "dropout before the head")
    fgm_epsilon: float = option(0.0, "FGM adversarial training on the word embeddings (0: off; 1.0 is usual)",
                                flag="--fgm", metavar="EPSILON")
    freeze_layers: int = option(0, "freeze embeddings + this many lower layers", minimum=0)
    evals_per_epoch: int = option(2, "held-out evaluations (and checkpoints) per epoch", minimum=1)
    patience: int = option(2, "evaluations without gain before stopping", minimum=1)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise InputError(f"--pooling {self.pooling}: choose one of {', '.join(POOLINGS)}")
        if self.loss not in ESSAY_LOSSES:
            raise InputError(f"--loss {self.loss}: choose one of {', '.join(ESSAY_LOSSES)}")
        if self.fgm_epsilon and self.freeze_layers:
            raise InputError("--fgm perturbs the word embeddings, which --freeze-layers freezes: use one of them")


def resolve_paths(choice: str) -> tuple[str, ...]:
    """--paths auto|fast|finetune|both: `auto` fine-tunes only where a GPU can do it in reasonable time."""
    if choice == "auto":
        import torch

        return PATHS if torch.cuda.is_available() else ("fast",)
    return PATHS if choice == "both" else tuple(choice.split(","))


@dataclass
class EssayConfig(EngineOptions):
    base_model: str | None = option(None, "encoder: a local HF/ST dir (default: bundled MiniLM)", flag="--model")
    paths: tuple[str, ...] = option(
        help="fast: frozen features -> ridge/SVR + TF-IDF ridge (CPU minutes); finetune: fold models; both; "
             "auto: both on a GPU, fast on a CPU", factory=lambda: resolve_paths("auto"), cli_default="auto",
        parse=resolve_paths, metavar="auto|fast|finetune|both")
    folds: int = option(5, "multilabel-stratified folds", minimum=2)
    train_folds: int | None = option(None, "fine-tune only the first N folds (exploring; the blend is fitted where "
                                           "OOF exists)", minimum=1)
    seed: int = option(42, "seed of folds, batches and initialisation")
    windows: WindowSpec = option(factory=WindowSpec)
    fast: FastConfig = option(factory=FastConfig)
    finetune: FineTuneConfig = option(factory=FineTuneConfig)

    def __post_init__(self) -> None:
        if not self.paths or set(self.paths) - set(PATHS):
            raise InputError(f"--paths {','.join(self.paths)}: choose from {', '.join(PATHS)}")
        check_train_folds(self.train_folds, self.folds)
        self.fast = dataclasses.replace(self.fast, windows=self.windows)  # one window layout for both paths

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "paths": list(self.paths), "windows": self.windows.to_dict(),
                "fast": self.fast.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EssayConfig:
        """What `to_dict` wrote (an artifact's params), back as a config; unknown keys are ignored."""
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "paths": tuple(known["paths"]), "windows": WindowSpec(**known["windows"]),
                      "fast": FastConfig.from_dict(known["fast"]), "finetune": FineTuneConfig(**known["finetune"])})


# -- train classifier ---------------------------------------------------------------------------------------

NOISY = ("none", "drop", "downweight")


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


# -- quickstart ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuickstartConfig:
    """The quickstart's options; `edurank quickstart` takes its flags from here."""

    essays: int = option(1000, "essays sampled for the essay scorer (0: all)", minimum=0)
    responses: int = option(3000, "responses sampled for the classifier (0: all)", minimum=0)
    seed: int = option(42, "seed of the samples")
    serve: bool = option(True, "start the service when everything is trained")
    full: bool = option(False, "train the best recommend path (`edurank train recommend`: fold retrievers, a "
                               "fine-tuned served retriever, its index, the ranker) instead of the bundled "
                               "retriever's index and ranker (an hour or more on a CPU)")


@dataclass(frozen=True)
class DistilConfig:
    """`edurank distil`'s options."""

    soft_weight: float = option(0.9, "weight of the teacher's soft predictions in the loss (the rest: the labels)")
    temperature: float = option(5.0, "classifier: softmax temperature of teacher and student in the KL term")
    epochs: int | None = option(None, "student epochs (default: the teacher's)", minimum=1)
    train_folds: int | None = option(None, "cross-fit only the first N of the teacher's folds (exploring; the "
                                           "figures cover those folds)", minimum=1)
    max_delta: float = option(0.005, "keep the student only within this of the teacher's out-of-fold figure")
    speed_items: int = option(256, "items both models score to measure the speed-up", minimum=1)

    def __post_init__(self) -> None:
        if not 0.0 <= self.soft_weight <= 1.0:
            raise InputError(f"--soft-weight {self.soft_weight}: between 0 and 1")
        if self.temperature <= 0:
            raise InputError(f"--temperature {self.temperature}: must be positive")
