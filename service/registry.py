"""The model registry: loads the catalog, the retriever, its index, the reranker, the essay scorer and the
misconception classifier once at start-up, checks that they belong together, and holds them for every
endpoint (service/reload.py swaps in a new one). A part that fails to load turns off only the routes that need
it: the index side (`Retrieval`) the routes that search the catalog, an optional model its own (the retriever
and the cross-encoder serve /embed and /rerank without the index). An optional model whose newest version
fails serves the newest one on disk that loads and passes its checks.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edurank.artifacts import MANIFEST, Manifest, versions
from edurank.backends.base import Backend, backend_of, warm_up
from edurank.backends.config import TORCH
from edurank.backends.export import EXPORTS, find_export
from edurank.classifier.predictor import MisconceptionClassifier, Response
from edurank.encoders import fingerprint, model_path, portable_name, set_threads
from edurank.errors import InputError
from edurank.essays.scorer import EssayScorer
from edurank.pipelines.recommend import Recommender, VectorCache
from edurank.reranker.cross_encoder.model import Parts, Reranker
from edurank.reranker.lightgbm.config import NEEDS_NEIGHBOURS
from edurank.reranker.lightgbm.model import Ranker
from edurank.retriever.catalog import Catalog, load_catalog
from edurank.retriever.content_index import ContentIndex
from edurank.retriever.index_job import build_index, load_index
from edurank.retriever.live import LiveCatalog, LiveIndex, embedder, served_rows
from edurank.retriever.model import BiEncoder
from edurank.service.batcher import Batcher, BatchMetrics, tokens_of
from edurank.service.errors import RequestError, public_message
from edurank.service.settings import Settings
from edurank.timing import Timer, no_timer

log = logging.getLogger(__name__)
RETRIEVAL = "retrieval"  # the index side, in `problems` and `serves`
WAITING = "waiting for the index"  # how /ready says none is published yet (a later one is loaded when it appears)
EXPORTABLE = (Reranker.KIND, EssayScorer.KIND, MisconceptionClassifier.KIND)  # what EDURANK_BACKEND applies to
CHECK_DATA = {BiEncoder.KIND: "<catalog dir>", Reranker.KIND: "<catalog dir>", EssayScorer.KIND: "<essays CSV>",
              MisconceptionClassifier.KIND: "<responses CSV>"}  # what an export's agreement check reads
# the optional served models by artifact kind: how to load one, and what the service does without it
OPTIONAL: dict[str, tuple[Callable[[Path], Any], str]] = {
    Ranker.KIND: (Ranker.load, "second stage: the cross-encoder if one is loaded, else retrieval only"),
    Reranker.KIND: (Reranker.load, "serving retrieval only"),
    EssayScorer.KIND: (EssayScorer.load, "/score-essay answers 503"),
    MisconceptionClassifier.KIND: (MisconceptionClassifier.load, "/classify answers 503"),
}


@dataclass
class Retrieval:
    """The index side: the catalog, the retriever's index (with the live catalog) and the second stage behind
    one recommender. When it fails to load only the routes that search the catalog are off."""

    catalog: Catalog
    recommender: Recommender
    live: LiveCatalog
    versions: dict[str, str | None]  # the index's and the ranker's
    topic_rows: dict[str, int]
    languages: frozenset[str]
    kinds: frozenset[str]

    @classmethod
    def load(cls, settings: Settings, encoder: BiEncoder, reranker: Reranker | None, embed: Batcher[str],
             pairs: Batcher[Any] | None, problems: dict[str, str], reloading: bool) -> Retrieval:
        """Load and check it over the registry's retriever and cross-encoder (and their batches); `reloading`:
        only what is published (no index built, no ranker trained)."""
        catalog = load_catalog(settings.catalog)
        index = open_index(settings, encoder, catalog, reloading)
        companion = companion_encoder(settings, index)

        def fits(ranker: Ranker) -> str | None:
            if usable_ranker(ranker, index, catalog, reranker, companion) is None:
                return "it does not fit the served index, reranker or companion encoder (the server log says why)"
            return None

        ranker = load_optional(settings, Ranker.KIND, problems, fits)
        if ranker is None and settings.train_ranker and not reloading and Ranker.KIND not in problems:
            ranker = usable_ranker(first_ranker(settings, encoder, catalog, problems), index, catalog, reranker,
                                   companion)
        warm_up(encoder, companion)  # the optional models were warmed up as they loaded
        live = LiveCatalog(settings.live_root, LiveIndex.over(index, served_rows(index, catalog.content)),
                           encoder.fingerprint, settings.index_root, settings.compact_rows,
                           embed=embedder(encoder, companion))
        index = live.index
        recommender = Recommender(encoder, index, index.items, reranker, ranker=ranker, topics=catalog.topics,
                                  companion=companion, batched_embed=embed, batched_pairs=pairs, cache=VectorCache())
        retrieval = cls(catalog, recommender, live,
                        {"index": version_of_index(index), Ranker.KIND: version_of_model(ranker)},
                        {t: i for i, t in enumerate(catalog.topics["id"])},
                        frozenset(index.items["language"].unique().to_list()),
                        frozenset(index.items["kind"].drop_nulls().unique().to_list()))
        live.listener = retrieval.serve_snapshot
        return retrieval

    def serve_snapshot(self, index: LiveIndex, first_new: int) -> None:
        """The live catalog changed: requests from now on see `index` (those running keep theirs)."""
        self.recommender = self.recommender.with_index(index, first_new)
        added = index.items.slice(first_new)
        self.languages = self.languages | frozenset(added["language"].drop_nulls().unique().to_list())
        self.kinds = self.kinds | frozenset(added["kind"].drop_nulls().unique().to_list())
        self.versions = {**self.versions, "index": version_of_index(index)}

    def close(self) -> None:
        self.live.close()


@dataclass
class Registry:
    """Everything the endpoints serve, loaded together: the index side (`Retrieval`; None when it failed to
    load, `problems[RETRIEVAL]` says why), the retriever (`encoder`, None when it failed to load) and the
    optional models, each off alone when it fails. Every model runs in batches shared across requests
    (`Batcher`): the retriever's in `embed`, the cross-encoder's in `pairs` (the recommender uses both), the
    essay scorer's and the classifier's in `score_essays` and `classify`."""

    settings: Settings
    retrieval: Retrieval | None
    reranker: Reranker | None = None
    essays: EssayScorer | None = None
    classifier: MisconceptionClassifier | None = None
    score_essays: Batcher[str] | None = field(default=None, repr=False)  # texts -> (essays, 6) scores
    classify: Batcher[Response] | None = field(default=None, repr=False)  # responses -> their predictions
    problems: dict[str, str] = field(default_factory=dict)  # part -> why it is not served (client-safe)
    batchers: list[Batcher[Any]] = field(default_factory=list, repr=False)  # closed when swapped out
    loaded_seconds: float = 0.0
    encoder: BiEncoder | None = None
    embed: Batcher[str] | None = field(default=None, repr=False)  # texts -> the retriever's vectors
    pairs: Batcher[Any] | None = field(default=None, repr=False)  # (query, content, rank) -> cross-encoder logits
    encoder_version: str | None = None

    @classmethod
    def load(cls, settings: Settings, batch_metrics: BatchMetrics | None = None, reloading: bool = False) -> Registry:
        """Load every part; `reloading`: only what is published (no index built, no ranker trained)."""
        started = time.perf_counter()
        set_threads(settings.threads, settings.spin_threads, request_threads=1)  # FAISS, BLAS: one request's work
        problems: dict[str, str] = {}
        reranker, essays, classifier = (load_optional(settings, kind, problems)
                                        for kind in (Reranker.KIND, EssayScorer.KIND, MisconceptionClassifier.KIND))
        budget = settings.batch_max_tokens  # each batcher's items weighed in estimated tokens (tokens_of)
        pairs = None if reranker is None else Batcher(
            "reranker", reranker.scores, settings.batch_max_pairs, settings.batch_max_wait_ms, settings.max_queue,
            batch_metrics, lambda pair: tokens_of(*pair[0], *pair[1], limit=reranker.format.max_length), budget)
        encoder: BiEncoder | None = None
        embed: Batcher[str] | None = None
        retrieval: Retrieval | None = None
        try:
            encoder = served_encoder(settings)
            embed = Batcher("retriever", encoder.embed, settings.batch_max_items, settings.batch_max_wait_ms,
                            settings.max_queue, batch_metrics,
                            lambda text: tokens_of(text, limit=encoder.max_tokens), budget)
            retrieval = Retrieval.load(settings, encoder, reranker, embed, pairs, problems, reloading)
        except Exception as err:  # noqa: BLE001 - the index side is off; the other models serve on
            log.error("the catalog, retriever or index is not served (the routes searching the catalog are off): %s",
                      err, exc_info=not isinstance(err, InputError))
            problems[RETRIEVAL] = public_message(str(err) if str(err).startswith(WAITING)
                                                 else f"{type(err).__name__}: {err}", settings.named_paths())
        stage = batch_metrics.stage if batch_metrics is not None else no_timer  # their stages, timed per batch
        score_essays = None if essays is None else Batcher(
            "essays", lambda texts: essays.score(texts, stage), settings.batch_max_essays,
            settings.batch_max_wait_ms, settings.max_queue, batch_metrics, tokens_of,
            settings.batch_max_tokens)  # every window of an essay runs: no limit to its tokens
        classify = None if classifier is None else Batcher(
            "classifier", lambda responses: classifier.classify(responses, timer=stage), settings.batch_max_items,
            settings.batch_max_wait_ms, settings.max_queue, batch_metrics,
            lambda r: tokens_of(r.question_text, r.answer, r.explanation), settings.batch_max_tokens)
        registry = cls(settings, retrieval, reranker, essays, classifier, score_essays, classify, problems,
                       [batcher for batcher in (score_essays, classify, embed, pairs) if batcher is not None],
                       encoder=encoder, embed=embed, pairs=pairs,
                       encoder_version=version_of(encoder.path) if encoder is not None else None)
        registry.loaded_seconds = round(time.perf_counter() - started, 2)
        log.info("registry loaded in %.1f s: %s", registry.loaded_seconds, registry.versions)
        return registry

    def retrieval_off(self) -> RequestError:
        """The 503 of every route that needs what the index side loads, saying why it is off."""
        return RequestError((), f"not ready: {self.problems[RETRIEVAL]}", 503)

    @property
    def served(self) -> Retrieval:
        """The index side; RequestError 503 with why when it is not served (its routes are off)."""
        if self.retrieval is None:
            raise self.retrieval_off()
        return self.retrieval

    @property
    def retriever(self) -> BiEncoder:
        """The retriever (/embed, /v1/embeddings, served without the index); RequestError 503 with why when it
        failed to load."""
        if self.encoder is None:
            raise self.retrieval_off()
        return self.encoder

    def embed_texts(self, texts: list[str], timer: Timer = no_timer) -> np.ndarray:
        """The retriever's vectors of ready texts, in the shared batches."""
        batched = self.embed
        if batched is None:
            raise self.retrieval_off()
        with timer("encode"):  # tokenising and waiting for the batch included
            return batched(texts)

    def cross_encoder_logits(self, items: list[tuple[Parts, Parts, int]], timer: Timer = no_timer) -> np.ndarray:
        """The cross-encoder's logits of (query parts, content parts, rank) items, in the shared batches."""
        if self.pairs is None:
            raise RequestError((), "no reranker is loaded (train one with `edurank train reranker`)", 503)
        with timer("rerank"):  # pairing, tokenising and waiting for the batch included
            return self.pairs(items)

    @property
    def catalog(self) -> Catalog:
        return self.served.catalog

    @property
    def recommender(self) -> Recommender:
        return self.served.recommender

    @property
    def live(self) -> LiveCatalog:
        return self.served.live

    @property
    def topic_rows(self) -> dict[str, int]:
        return self.served.topic_rows

    @property
    def languages(self) -> frozenset[str]:
        return self.served.languages

    @property
    def kinds(self) -> frozenset[str]:
        return self.served.kinds

    @property
    def versions(self) -> dict[str, str | None]:
        """The served version of each part (None: not served, or not a versioned artifact)."""
        side = self.retrieval.versions if self.retrieval else dict.fromkeys(("index", Ranker.KIND))
        return {"retriever": self.encoder_version, **side, Reranker.KIND: version_of_model(self.reranker),
                EssayScorer.KIND: version_of_model(self.essays),
                MisconceptionClassifier.KIND: version_of_model(self.classifier)}

    def describe(self) -> dict[str, Any]:
        side = self.retrieval
        return {"versions": self.versions, "backend": self.settings.backend, "retrieval": side is not None,
                "catalog_items": side.live.index.alive if side else None,
                "live": side.live.describe() if side else None,
                "catalog_topics": len(side.catalog.topics) if side else None,
                **{kind: self.serves(kind) for kind in OPTIONAL},
                "load_seconds": self.loaded_seconds, "problems": self.problems}

    def serves(self, part: str) -> bool:
        """Whether the index side (RETRIEVAL) or the optional model of that kind is served."""
        side = self.retrieval
        models = {RETRIEVAL: side, Ranker.KIND: side and side.recommender.ranker,
                  Reranker.KIND: self.reranker, EssayScorer.KIND: self.essays,
                  MisconceptionClassifier.KIND: self.classifier}
        return models[part] is not None

    def close(self) -> None:
        """Swapped out: each batcher answers what it holds, then stops (late callers run alone)."""
        for batcher in self.batchers:
            batcher.close()
        if self.retrieval is not None:
            self.retrieval.close()

    def missing(self, kind: str, untrained: str) -> str:
        """Why a route's optional model is not there: its load failure, else how to train one."""
        problem = self.problems.get(kind)
        return f"the {kind} model failed to load, so this route is off: {problem}" if problem else untrained


def served_encoder(settings: Settings) -> BiEncoder:
    """The configured (or trained, or bundled) retriever, on the configured backend."""
    return BiEncoder.load(on_backend(settings, BiEncoder.KIND, settings.artifact(settings.retriever, "retriever")),
                          settings.max_tokens)


def on_backend(settings: Settings, kind: str, path: str | Path | None) -> Path:
    """`path` itself when it runs on the configured backend; for onnx / onnx-int8, the newest export of it
    under <artifacts>/exports (found by the source's fingerprint, without loading the source). Refused when
    there is none, or when the model given is an export for another backend."""
    path = model_path(path)
    backend = backend_of(Manifest.read(path) if (path / MANIFEST).is_file() else None)
    if backend == settings.backend:
        return path
    setting = f"EDURANK_{kind.upper()}"
    if backend != TORCH:
        raise InputError(f"{setting} is an {backend} export but EDURANK_BACKEND is {settings.backend}; give its "
                         f"source model or set EDURANK_BACKEND={backend}")
    root = settings.artifacts / EXPORTS
    export = find_export(root, kind, fingerprint(path), settings.backend)
    if export is None:
        raise InputError(f"EDURANK_BACKEND={settings.backend}: no {settings.backend} export of the served {kind} "
                         f"under {root}; run `edurank export --model {portable_name(path)} --backend "
                         f"{settings.backend} --out {root} --data {CHECK_DATA[kind]}`")
    log.info("serving the %s export %s of %s %s", settings.backend, export.name, kind, path)
    return export


def load_optional(settings: Settings, kind: str, problems: dict[str, str],
                  check: Callable[[Any], str | None] | None = None) -> Any:
    """The configured (or trained) artifact of an optional kind, loaded: the newest version that loads and
    passes `check` (which returns a problem or None), trying LATEST, then older versions newest first. When
    an older one serves, `problems` says that the newest failed and which serves; when none does (or there
    is none), None: only what needs it is off, and `problems` says why (for clients, without paths)."""
    path = settings.artifact(getattr(settings, kind), kind)
    load, without = OPTIONAL[kind]
    if path is None:
        log.warning("no %s under %s/%s and none configured: %s", kind, settings.artifacts, kind, without)
        return None
    failed: list[tuple[str, str]] = []  # (version, why)
    for version in versions(path) or [path]:  # a plain model directory (no manifest): itself
        try:
            model = load(on_backend(settings, kind, version) if kind in EXPORTABLE else version)
            if isinstance(model, Backend):
                warm_up(model)  # one that cannot run a batch is off like one that cannot load
            problem = check(model) if check is not None else None
        except Exception as err:  # noqa: BLE001 - any failure of one optional model leaves the rest serving
            log.exception("the %s at %s failed to load", kind, version)
            problem = f"{type(err).__name__}: {err}"
        if problem is None:
            if failed:
                problems[kind] = public_message(f"serving the previous good version {version.name}: version "
                                                f"{failed[0][0]} failed ({failed[0][1]})", settings.named_paths())
                log.error("%s: %s", kind, problems[kind])
            return model
        failed.append((version.name, problem))
    log.error("no version of the %s at %s loads: %s", kind, path, without)
    older = f" (and {len(failed) - 1} older version(s) failed too)" if len(failed) > 1 else ""
    problems[kind] = public_message(failed[0][1] + older, settings.named_paths())
    return None


def version_of(path: Path) -> str:
    """A trained artifact's version, or the directory name of a plain model (the bundled one, say)."""
    return Manifest.read(path).version if (path / MANIFEST).is_file() else path.name


def version_of_index(index: ContentIndex) -> str | None:
    return index.manifest.version if index.manifest is not None else None


def version_of_model(model: Any) -> str | None:
    """An optional model's version (None: not loaded, or not a published artifact)."""
    return model.manifest.version if model is not None and model.manifest is not None else None


def open_index(settings: Settings, encoder: BiEncoder, catalog: Catalog, reloading: bool = False) -> ContentIndex:
    """The configured index, checked against the encoder and the catalog; built first when missing or
    stale and `build_index` allows, never when `reloading` (the previous version stays on disk until the new
    one is published). Refused with what to do otherwise."""
    root = settings.index_root
    may_build = settings.build_index and not reloading
    if not may_build and not versions(root):
        then = (f"it is loaded when it appears (looked for every {settings.retry_seconds:g} s)"
                if settings.retry_seconds and not reloading else "then reload")
        raise InputError(f"{WAITING}: none is published under {root} yet; run `edurank index`, {then}")
    problem = None
    try:
        index = load_index(root, encoder)
        if index.manifest is None or index.manifest.data.get("hash") != catalog.data_hash:
            problem = f"index {root} was built from another version of the catalog"
        elif index.manifest.params.get("max_tokens") != encoder.max_tokens:  # its vectors would not match /embed's
            problem = (f"index {root} cut texts at {index.manifest.params.get('max_tokens')} tokens; the retriever "
                       f"reads {encoder.max_tokens}")
        elif (index.lexical is None or index.topics is None) and may_build:
            problem = f"index {root} has no lexical index or topic vectors (built by an older edurank)"
        else:
            if index.lexical is None or index.topics is None:
                log.warning("index %s has no lexical index or topic vectors: the ranker's lexical and reverse "
                            "features are missing (rebuild it with `edurank index`)", root)
            return index
    except InputError as err:
        problem = str(err)
    if reloading:
        raise InputError(f"{problem}; run `edurank index` to publish a good version, then reload")
    if not may_build:
        raise InputError(f"{problem}; run `edurank index` or set EDURANK_BUILD_INDEX=true")
    log.info("%s: building the index now", problem)
    return load_index(build_index(encoder, catalog, root), encoder)


def companion_encoder(settings: Settings, index: ContentIndex) -> BiEncoder | None:
    """The encoder of the index's companion vectors (for a ranker that reads their cosine, and to embed live
    rows beside them): the configured one, else the one the index names; None where there is nothing to
    load (usable_ranker then says why)."""
    if index.companion is None:
        return None
    path = settings.companion or index.companion.model.path
    try:
        return BiEncoder.load(path)
    except InputError as err:
        log.error("companion encoder not loaded: %s (set EDURANK_COMPANION)", err)
        return None


def usable_ranker(ranker: Ranker | None, index: ContentIndex, catalog: Catalog,
                  reranker: Reranker | None = None, companion: BiEncoder | None = None) -> Ranker | None:
    """The ranker, unless the index lacks what its features read, or its cross or companion group needs a
    model other than the loaded one (values missing or differently scaled where training had them, so the
    scores silently wrong): then none, with the reason logged."""
    if ranker is None:
        return None
    problem = ranker.cross_encoder_problem(reranker.source_fingerprint if reranker else None)
    if problem:
        log.error("ranker not served: %s (serve that reranker, or a ranker trained without --cross-encoder)", problem)
        return None
    problem = ranker.companion_problem(index.companion.model.fingerprint if index.companion else None,
                                       companion.fingerprint if companion else None)
    if problem:
        log.error("ranker not served: %s (`edurank index --companion`, or a ranker trained without --companion)",
                  problem)
        return None
    needs = {"a lexical index": (("lexical",), index.lexical is not None),
             "topic vectors": (("reverse", *NEEDS_NEIGHBOURS), index.topics is not None)}
    lacking = [part for part, (groups, present) in needs.items() if not present and set(groups) & set(ranker.groups)]
    if lacking:
        log.error("ranker not served: the index has no %s (rebuild it with `edurank index`)", " or ".join(lacking))
        return None
    if ranker.manifest is not None and ranker.manifest.data.get("hash") != catalog.data_hash:
        log.warning("the ranker was trained on another version of the catalog: its graph features use those "
                    "links (retrain it with `edurank train ranker`)")
    return ranker


def first_ranker(settings: Settings, encoder: BiEncoder, catalog: Catalog, problems: dict[str, str]) -> Ranker | None:
    """Train a ranker on the served catalog's correlations (seconds: no network is trained), so a first start
    serves both stages; only when the served retriever never saw those topics, as cross-fitting requires.
    Any failure (a read-only artifacts folder is checked before training) leaves none, `problems` says why."""
    from edurank.training.config import RankerConfig
    from edurank.training.ranker import train_ranker

    topics = catalog.correlations["topic_id"].n_unique()
    if topics < 10:
        log.warning("no ranker: the catalog links only %d topics to content, too few to train one", topics)
        return None
    out = settings.artifacts / Ranker.KIND
    try:
        if not writable(out):
            raise PermissionError(f"{out} is not writable, so no ranker is trained at start-up; train one with "
                                  "`edurank train ranker` and publish it there")
        log.info("no ranker: training one on the catalog's %d linked topics", topics)
        return Ranker.load(train_ranker(catalog, [str(encoder.path)], out, RankerConfig(folds=min(5, topics // 2))))
    except Exception as err:  # noqa: BLE001 - without a ranker the service serves retrieval (and any cross-encoder)
        log.error("no ranker trained at start-up: %s", err, exc_info=not isinstance(err, InputError))
        problems[Ranker.KIND] = public_message(f"{type(err).__name__}: {err}", settings.named_paths())
        return None


def writable(directory: Path) -> bool:
    """Whether a file can be written in `directory` (made first when missing): a read-only mount or folder
    refuses the probe."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False
