"""`edurank train recommend --catalog DIR --out DIR`: the best recommend path in one resumable job, published
where the service reads each part, so `EDURANK_ARTIFACTS=DIR EDURANK_CATALOG=<catalog>` serves the set as it is.

1. Fold retrievers (`<out>/retriever-folds/<i>/`): one per fold, trained with that fold held out.
2. The served retriever (`<out>/retriever/`), trained on every topic.
3. Its index (`<out>/index/`), with the companion's vectors when the ranker reads them.
4. Optionally the cross-encoder (`<out>/reranker/`, `train reranker --init miners`), cross-fitted on the
   ranker's candidates, so the ranker's cross group reads its out-of-fold logits.
5. The LightGBM ranker (`<out>/ranker/`), each topic mined by the fold retriever blind to it.

A step is finished when its root's LATEST version records what its trainer's run hash is made of (kind,
parameters, data, edurank version, the models it was built from): a rerun of the same command skips it, and a
step whose inputs changed (a retrained fold retriever, say) trains again, as do the steps reading it. A killed
retriever or cross-encoder resumes from its staging checkpoints. One bar follows the job with an estimate of
the time left, redrawn every few seconds; `<out>/recommend.json` records each step's version and seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tqdm import tqdm

import edurank
from edurank.artifacts import Manifest, atomic_write_text, versions
from edurank.encoders import fingerprint, model_path
from edurank.errors import ArtifactMismatchError, InputError
from edurank.reranker.cross_encoder.model import Reranker
from edurank.reranker.lightgbm.model import Ranker
from edurank.retriever.catalog import Catalog
from edurank.retriever.config import IndexConfig
from edurank.retriever.content_index import COMPANION_MODEL_FILE, ContentIndex
from edurank.retriever.index_job import build_index, index_params
from edurank.retriever.model import BiEncoder
from edurank.retriever.topic_folds import seen_topics
from edurank.training.config import RankerConfig, RecommendConfig, RerankerConfig
from edurank.training.ranker import train_ranker
from edurank.training.reranker import train_reranker
from edurank.training.retriever import train_retriever

FOLDS, SUMMARY = "retriever-folds", "recommend.json"
SERVED, INDEX, CROSS, RANKER = "served retriever", "index", "cross-encoder", "ranker"
# seconds on a 2-core CPU (issue 28): per topic and epoch a retriever trains on, per item indexed, per item and
# retriever mining candidates, per linked topic the ranker fits, per candidate pair the cross-encoder reads;
# what the bar's first estimate of the time left is made of
SECONDS_PER = {"retriever": 0.5, "index": 0.022, "mining": 0.039, "ranker": 0.1, "cross-encoder": 0.03}


@dataclass(frozen=True)
class Expected:
    """What a step's published version records when it is what the step would train: the inputs its trainer's
    run hash is made of."""

    kind: str
    params: dict[str, Any]
    data_hash: str
    edurank: str | None = edurank.__version__  # None: the trainer's hash leaves the version out (the index)
    base: str | None = None  # fingerprint of the model it embeds with (the index)
    built_from: frozenset[str] | None = None  # fingerprints its `depends` may name
    holds: Callable[[Path], bool] | None = None  # what its files say and its manifest does not (the index's companion)

    def matches(self, version: Path) -> bool:
        """Whether the version records these inputs, once every file its manifest lists is checked."""
        manifest = Manifest.verified(version)
        return (manifest.kind == self.kind and manifest.data.get("hash") == self.data_hash
                and manifest.params == json.loads(json.dumps(self.params, default=str))
                and self.edurank in (None, manifest.edurank)
                and self.base in (None, manifest.base_model and manifest.base_model.fingerprint)
                and (self.built_from is None or {d.fingerprint for d in manifest.depends} <= self.built_from)
                and (self.holds is None or self.holds(version)))


def finished(root: Path, expected: Expected) -> Path | None:
    """`root`'s LATEST version (what the service and the later steps read) when it is what the step would
    train; None when there is none, or it is another run's or damaged."""
    found = versions(root)[:1] if root.is_dir() else []
    try:
        return next((version for version in found if expected.matches(version)), None)
    except (InputError, ArtifactMismatchError):  # unreadable, older or damaged: train it again
        return None


def stored_companion(version: Path) -> str | None:
    """The fingerprint of the companion whose vectors an index version holds (None: it holds none)."""
    path = version / COMPANION_MODEL_FILE
    return json.loads(path.read_text())["fingerprint"] if path.is_file() else None


def fold_step(fold: int) -> str:
    return f"fold {fold} retriever"


@dataclass(frozen=True)
class Step:
    name: str
    root: Path
    seconds: float  # estimated on a 2-core CPU
    needs: tuple[str, ...]  # the steps whose published versions it reads
    expected: Callable[[], Expected]  # called once every step it needs has published
    run: Callable[[], Path]


class RecommendJob:
    """The job's steps over one catalog, each reading what the steps before it published (`published`)."""

    def __init__(self, catalog: Catalog, out: Path, config: RecommendConfig):
        self.catalog, self.out, self.config = catalog, Path(out).resolve(), config
        self.published: dict[str, Path] = {}

    @property
    def fold_steps(self) -> tuple[str, ...]:
        return tuple(fold_step(fold) for fold in range(self.config.folds))

    @property
    def folds(self) -> list[Path]:
        return [self.published[name] for name in self.fold_steps]

    def pending(self) -> list[Step]:
        """The steps still to train, in order. A step not in `published` whose inputs are is found finished
        when its root's LATEST is what it would train (`published` records it); one reading a step still to
        train is pending too. The job calls it after each step it trains; the quickstart sums their estimates."""
        todo = []
        for step in self.steps():
            if step.name in self.published:
                continue
            ready = all(name in self.published for name in step.needs)
            found = finished(step.root, step.expected()) if ready else None
            if found is None:
                todo.append(step)
            else:
                self.published[step.name] = found
        return todo

    def steps(self) -> list[Step]:
        config, catalog = self.config, self.catalog
        linked, items = catalog.correlations["topic_id"].n_unique(), len(catalog.content)
        retriever = config.retriever(None)
        epochs = sum(retriever.epochs_in(round_) for round_ in range(retriever.rounds + 1))
        per_retriever = SECONDS_PER["retriever"] * linked * epochs
        steps = [self.retriever_step(fold_step(fold), self.out / FOLDS / str(fold), fold,
                                     per_retriever * (config.folds - 1) / config.folds)
                 for fold in range(config.folds)]
        steps.append(self.retriever_step(SERVED, self.out / BiEncoder.KIND, None, per_retriever))
        steps.append(Step(INDEX, self.out / ContentIndex.KIND,
                          SECONDS_PER["index"] * items * (2 if config.companion else 1), (SERVED,),
                          self.index_expected,
                          lambda: build_index(BiEncoder.load(self.published[SERVED]), catalog,
                                              self.out / ContentIndex.KIND, self.index_config())))
        # the cross-encoder and the ranker each mine the same candidates into their own root's .cache
        mining = SECONDS_PER["mining"] * items * config.folds
        if config.with_cross_encoder:
            pairs = linked * (config.candidates.dense + config.candidates.lexical)
            steps.append(Step(CROSS, self.out / Reranker.KIND, mining + SECONDS_PER[CROSS] * pairs,
                              (*self.fold_steps, SERVED), self.cross_expected,
                              lambda: train_reranker(catalog, [str(p) for p in self.folds], self.out / Reranker.KIND,
                                                     self.cross_config())))
        steps.append(Step(RANKER, self.out / Ranker.KIND, mining + SECONDS_PER[RANKER] * linked,
                          (*self.fold_steps, *([CROSS] if config.with_cross_encoder else [])), self.ranker_expected,
                          lambda: train_ranker(catalog, [str(p) for p in self.folds], self.out / Ranker.KIND,
                                               self.ranker_config())))
        return steps

    def retriever_step(self, name: str, root: Path, fold: int | None, seconds: float) -> Step:
        config = self.config.retriever(fold)
        return Step(name, root, seconds, (), lambda: Expected(BiEncoder.KIND, asdict(config), self.catalog.data_hash),
                    lambda: train_retriever(self.catalog, root, config))

    def index_config(self) -> IndexConfig:
        return IndexConfig(companion=self.config.companion)

    def companion(self) -> str | None:
        """The companion's fingerprint (None: no companion)."""
        return fingerprint(model_path(self.config.companion)) if self.config.companion else None

    def index_expected(self) -> Expected:
        served, companion = self.published[SERVED], self.companion()
        return Expected(ContentIndex.KIND, index_params(self.index_config(), self.config.retriever_max_tokens),
                        self.catalog.data_hash, edurank=None, base=fingerprint(served),
                        holds=lambda version: stored_companion(version) == companion)

    def cross_config(self) -> RerankerConfig:
        return self.config.reranker(str(self.published[SERVED]))

    def cross_expected(self) -> Expected:
        return Expected(Reranker.KIND, asdict(self.cross_config()), self.catalog.data_hash,
                        built_from=frozenset(fingerprint(p) for p in self.folds))

    def ranker_config(self) -> RankerConfig:
        return self.config.ranker(str(self.published[CROSS]) if self.config.with_cross_encoder else None)

    def ranker_expected(self) -> Expected:
        cross = [fingerprint(self.published[CROSS])] if self.config.with_cross_encoder else []
        companion = [self.companion()] if self.config.companion else []
        return Expected(Ranker.KIND, asdict(self.ranker_config()), self.catalog.data_hash,
                        built_from=frozenset([*map(fingerprint, self.folds), *cross, *companion]))

    def check_companion(self) -> None:
        """Refuse, before hours of training, a companion that learnt from these topics (the ranker would, after
        mining): its cosine would not be what serving sees for new topics."""
        if self.config.companion is not None and seen_topics(model_path(self.config.companion), self.catalog):
            raise InputError(f"--companion {self.config.companion}: it trained on these topics; give the bundled "
                             "model or one that never saw this catalog's links")


class StepBar:
    """One bar over a job's steps with an estimate of the time left: each step's estimated cost, scaled by how
    long the steps trained so far took against their estimates. A step found finished counts as done at once
    and leaves the scale alone. A daemon thread redraws it every `interval` seconds (tqdm redraws only on an
    update), the running step's share counting down meanwhile, until the bar closes."""

    def __init__(self, desc: str, estimates: dict[str, float], interval: float = 5.0):
        self.desc = desc
        self.left = {name: max(1, round(seconds)) for name, seconds in estimates.items()}  # the bar's units
        self.spent, self.planned = 0.0, 0  # seconds and estimates of the steps that trained
        self.running: tuple[str, float] | None = None  # the running step and when it started
        self.lock, self.closed = threading.Lock(), threading.Event()
        self.bar = tqdm(total=sum(self.left.values()), unit="s", desc=desc, postfix=self.remaining(),
                        bar_format="{desc}{percentage:3.0f}%|{bar}| {elapsed} so far{postfix} left")
        self.ticker = threading.Thread(target=self.tick, args=(interval,), name=f"{desc} bar", daemon=True)
        self.ticker.start()

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.closed.set()
        self.ticker.join()
        self.bar.close()

    def tick(self, interval: float) -> None:
        while not self.closed.wait(interval):
            with self.lock:
                self.bar.set_postfix_str(self.remaining())  # redraws

    def remaining(self) -> str:
        """The estimate of the time left, as the bar shows it (after ", "): the running step's share less the
        time it has run (never below 0), plus the others'."""
        scale = self.spent / self.planned if self.planned else 1.0
        seconds = scale * sum(self.left.values())
        if self.running is not None:
            name, started = self.running
            seconds -= min(scale * self.left[name], time.monotonic() - started)
        return f"~{tqdm.format_interval(seconds)}"

    def start(self, name: str) -> None:
        with self.lock:
            self.running = name, time.monotonic()
            self.bar.set_description(f"{self.desc}: {name}")

    def done(self, name: str, seconds: float | None) -> None:
        """Step `name` finished after `seconds` (None: found finished, nothing trained)."""
        with self.lock:
            units = self.left.pop(name)
            if seconds is not None:
                self.spent, self.planned = self.spent + seconds, self.planned + units
            if self.running is not None and self.running[0] == name:
                self.running = None
            self.bar.set_postfix_str(self.remaining(), refresh=False)
            self.bar.update(units)


def train_recommend(catalog: Catalog, out: Path, config: RecommendConfig) -> Path:
    """Run every step not finished yet (one bar over them all), print what is published and the ranker's
    held-out figures, and write them to `<out>/recommend.json` (returned)."""
    job = RecommendJob(catalog, out, config)
    job.check_companion()
    record: dict[str, dict[str, Any]] = {}
    with StepBar("recommend", {step.name: step.seconds for step in job.steps()}) as bar:
        while True:
            todo = job.pending()  # after each step: one whose inputs it published may be found finished
            for name in [name for name in job.published if name not in record]:
                found = job.published[name]
                tqdm.write(f"{name}: done (version {found.name})")
                record[name] = {"version": str(found), "seconds": 0.0, "skipped": True}
                bar.done(name, None)
            if not todo:
                break
            step = todo[0]
            bar.start(step.name)
            started = time.perf_counter()
            found = job.published[step.name] = step.run()
            seconds = round(time.perf_counter() - started, 1)
            tqdm.write(f"{step.name}: {found} ({seconds} s)")
            record[step.name] = {"version": str(found), "seconds": seconds, "skipped": False}
            bar.done(step.name, seconds)
    return summarise(job, {step.name: record[step.name] for step in job.steps()})


def summarise(job: RecommendJob, record: dict[str, dict[str, Any]]) -> Path:
    """Print the published versions, the ranker's held-out figures against retrieval alone, each step's
    seconds and how to serve the set; write them to `<out>/recommend.json` (atomically)."""
    for step in record.values():
        step["built_in"] = round(sum(Manifest.read(Path(step["version"])).seconds.values()), 1)
    metrics = Manifest.read(job.published[RANKER]).metrics
    figures = {name: {k: round(v, 4) for k, v in metrics.get(name, {}).items() if k in ("mean_f2", "map@25")}
               for name in ("held_out", "retrieval_only")}
    summary = {"steps": record, "seconds": round(sum(r["seconds"] for r in record.values()), 1),
               "skipped": [name for name, r in record.items() if r["skipped"]], "ranker": figures}
    atomic_write_text(job.out / SUMMARY, json.dumps(summary, indent=2))
    for name, step in record.items():
        took = f"done before, built in {step['built_in']} s" if step["skipped"] else f"{step['seconds']} s"
        tqdm.write(f"{name:>17}: {step['version']} ({took})")
    catalog = job.catalog.files[1].parent.resolve()  # the content file's folder: what load_catalog read
    tqdm.write(f"ranker held-out {figures['held_out']}, retrieval alone {figures['retrieval_only']}; "
               f"{summary['seconds']} s in all; serve it with EDURANK_ARTIFACTS={job.out} EDURANK_CATALOG={catalog}")
    return job.out / SUMMARY
