"""`edurank quickstart --data DIR`: every job's CPU fast path on data laid out like ../shared/data, then the
service with every endpoint answering.

DIR holds `curriculum/` (a catalog in the LECR layout), `fb3/train.csv` (scored essays) and `map/train.csv`
(labelled student responses); a missing part is skipped and its route answers 503. In order: the index
(bundled MiniLM), the LightGBM ranker over hybrid candidates (cross-fitted on the catalog's links), the
essay scorer's fast path (frozen features -> ridge, TF-IDF -> ridge) and a classifier whose lower layers are
frozen (two members, one epoch), each on a sample of the rows so the whole run takes minutes. `--full`
trains the best recommend path instead of the index and ranker (`edurank train recommend`: fold retrievers,
a fine-tuned served retriever, its index, the ranker; an hour or more on a CPU); without it, a root where
`--full` ran is refused (a bundled-encoder index beside its fine-tuned retriever would not be served). One bar
follows the steps with an estimate of the time left (per-row costs measured on a 2-core CPU, rescaled as the
steps finish; `--full`'s covers only its steps not finished yet); each step shows its own bar too.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tqdm import tqdm

from edurank.errors import InputError
from edurank.training.config import QuickstartConfig

log = logging.getLogger(__name__)
CATALOG, ESSAYS, RESPONSES = "curriculum", "fb3/train.csv", "map/train.csv"
# seconds per unit on a 2-core CPU (bench/README.md): content items indexed, linked topics ranked, essays
# and responses trained on (recommend: its own steps' estimate, in seconds); what the bar's first estimate of
# the time left is made of
SECONDS_PER = {"index": 0.022, "ranker": 0.10, "essays": 0.14, "classifier": 0.023, "recommend": 1.0}


@dataclass(frozen=True)
class Step:
    name: str
    units: int  # what its cost estimate scales with
    run: Callable[[], Path]


def sample_csv(source: Path, rows: int, seed: int, folder: Path) -> Path:
    """`rows` random rows of a CSV (all when 0 or fewer are there), written to `folder`."""
    frame = pl.read_csv(source, infer_schema_length=0)  # all text: the trainer parses, and reports bad rows
    if 0 < rows < len(frame):
        frame = frame.sample(rows, seed=seed)
    path = folder / source.name
    frame.write_csv(path)
    return path


def plan(data: Path, out: Path, config: QuickstartConfig, scratch: Path) -> list[Step]:
    """The steps DIR's parts allow, each publishing into its kind's folder under `out`."""
    from edurank.artifacts import versions
    from edurank.retriever.catalog import load_catalog
    from edurank.retriever.index_job import build_index
    from edurank.retriever.model import BiEncoder
    from edurank.training.classifier import train_classifier
    from edurank.training.config import ClassifierConfig, EssayConfig, RankerConfig, RecommendConfig
    from edurank.training.essays import train_essays
    from edurank.training.ranker import train_ranker
    from edurank.training.recommend import RecommendJob, train_recommend

    if not (data / CATALOG).is_dir():
        raise InputError(f"{data}: no {CATALOG}/ folder (a catalog in the LECR layout: topics.csv, content.csv, "
                         "correlations.csv); quickstart needs at least that")
    catalog = load_catalog(data / CATALOG)
    linked = catalog.correlations["topic_id"].n_unique()
    folds = max(2, min(5, linked // 2))
    if config.full:
        full = RecommendConfig(folds=folds)
        steps = [Step("recommend", round(sum(s.seconds for s in RecommendJob(catalog, out, full).pending())),
                      lambda: train_recommend(catalog, out, full))]
    elif versions(out / BiEncoder.KIND):
        raise InputError(f"{out / BiEncoder.KIND}: a fine-tuned retriever (`quickstart --full`) the service would "
                         "refuse beside a bundled-encoder index; rerun with --full or give another --out")
    else:
        encoder = BiEncoder.load(None)
        steps = [Step("index", len(catalog.content), lambda: build_index(encoder, catalog, out / "index")),
                 Step("ranker", linked, lambda: train_ranker(catalog, [str(encoder.path)], out / "ranker",
                                                             RankerConfig(folds=folds)))]
    if (data / ESSAYS).is_file():
        essays = sample_csv(data / ESSAYS, config.essays, config.seed, scratch)
        steps.append(Step("essays", pl.scan_csv(essays).select(pl.len()).collect().item(),
                          lambda: train_essays(essays, out / "essays", EssayConfig(paths=("fast",)))))
    else:
        log.warning("%s: no %s; /score-essay will answer 503", data, ESSAYS)
    if (data / RESPONSES).is_file():
        responses = sample_csv(data / RESPONSES, config.responses, config.seed, scratch / "map")
        steps.append(Step("classifier", pl.scan_csv(responses).select(pl.len()).collect().item(),
                          lambda: train_classifier(responses, out / "classifier", ClassifierConfig(
                              folds=2, freeze_layers=5, epochs=1, max_length=96))))
    else:
        log.warning("%s: no %s; /classify will answer 503", data, RESPONSES)
    return steps


def quickstart(data: Path, out: Path, config: QuickstartConfig) -> dict[str, float]:
    """Run every step (one bar over them all), then serve unless told not to; the seconds of each step."""
    from edurank.training.recommend import StepBar

    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edurank-quickstart-") as folder:
        scratch = Path(folder)
        (scratch / "map").mkdir()
        steps = plan(Path(data), Path(out), config, scratch)
        with StepBar("quickstart", {step.name: SECONDS_PER[step.name] * step.units for step in steps}) as bar:
            for step in steps:
                bar.start(step.name)
                started = time.perf_counter()
                path = step.run()
                seconds[step.name] = round(time.perf_counter() - started, 1)
                bar.done(step.name, seconds[step.name])
                tqdm.write(f"{step.name}: {path} ({seconds[step.name]} s)")
    seconds["total"] = round(sum(seconds.values()), 1)
    tqdm.write(f"quickstart trained everything in {seconds['total']} s: {seconds}")
    return seconds


def serving_settings(data: Path, out: Path) -> dict[str, object]:
    """The service settings that serve what the quickstart published."""
    return {"artifacts": Path(out), "catalog": Path(data) / CATALOG, "build_index": False}
