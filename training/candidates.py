"""What both second-stage trainers share: topic folds with their cross-fitting plan, and each topic's hybrid
candidates (and nearest catalog topics) mined by a retriever that never trained on it.

The ranker (LightGBM) and the cross-encoder read the same candidate rows under the same folds, so the
cross-encoder's out-of-fold logits can join the ranker's features row for row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import torch

import edurank
from edurank.artifacts import atomic_path, hash_json
from edurank.encoders import fingerprint, model_path
from edurank.errors import InputError
from edurank.reranker.lightgbm.features import Graph
from edurank.retriever.catalog import Catalog
from edurank.retriever.config import CandidateConfig
from edurank.retriever.hybrid import Filters, hybrid_candidates
from edurank.retriever.index_job import build_lexical, in_memory_index, topic_bank
from edurank.retriever.lexical import lexical_text
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import topic_parts
from edurank.retriever.topic_bank import NEIGHBOURS_SEARCHED
from edurank.retriever.topic_folds import TRAIN_ONLY, seen_topics, topic_folds, training_topics
from edurank.training.config import CrossFitOptions

log = logging.getLogger(__name__)
MINED_FORMAT = 2  # of the cached candidates' columns; bump when mining adds or changes one


def assign_miners(catalog: Catalog, topics: Sequence[str], retrievers: Sequence[Path]) -> dict[Path, list[str]]:
    """Each topic goes to the first retriever that never saw it; a topic no retriever is blind to is dropped
    (its candidates would be easier than served ones)."""
    seen = {path: seen_topics(path, catalog) for path in retrievers}
    plan: dict[Path, list[str]] = {path: [] for path in retrievers}
    dropped = 0
    for topic in topics:
        miner = next((path for path in retrievers if topic not in seen[path]), None)
        if miner is None:
            dropped += 1
        else:
            plan[miner].append(topic)
    if dropped:
        log.warning("%d of %d topics dropped: every given retriever trained on them", dropped, len(topics))
    if not any(plan.values()):
        raise InputError("every given retriever trained on these topics, so its candidates are not what serving "
                         "sees; give retrievers that held folds out (edurank train retriever --folds K --fold I) "
                         "or the untrained base model (--retriever bundled)")
    return {path: ids for path, ids in plan.items() if ids}


@dataclass
class CrossFit:
    """Which topics take part and, per fold, which may train while it is held out: the other folds' topics
    minus those linking one of its held-out items (`hold_out_items`)."""

    assignment: dict[str, int]
    training: dict[int, set[str]]

    @classmethod
    def of(cls, catalog: Catalog, options: CrossFitOptions) -> CrossFit:
        split = {"share": options.hold_out_items, "seed": options.seed}
        assignment = topic_folds(catalog, options.folds, options.seed, options.group_by)
        if options.fold is not None:  # held out for good: its topics and those linking its held-out items
            kept = set(training_topics(catalog, assignment, options.fold, **split))
            assignment = {t: f for t, f in assignment.items() if t in kept}
        folds = sorted({f for f in assignment.values() if f != TRAIN_ONLY})
        return cls(assignment, {f: set(training_topics(catalog, assignment, f, **split)) for f in folds})

    def graph(self, catalog: Catalog, fold: int | None) -> Graph:
        """The links a fold's topics may see (every taking-part topic's for None or a training-only topic)."""
        topics = self.training[fold] if fold in self.training else set(self.assignment)
        return Graph.build(catalog.correlations.filter(pl.col("topic_id").is_in(list(topics))), catalog.topics)

    def seen(self, catalog: Catalog, topics: Sequence[str]) -> dict[str, bool]:
        """Per topic, whether its gold items were all linked by topics that trained while its fold was out."""
        linked = {fold: {item for t in training for item in catalog.gold.get(t, ())}
                  for fold, training in self.training.items()}
        return {t: catalog.gold[t] <= linked.get(self.assignment[t], set()) for t in topics}


def mine_hybrid(catalog: Catalog, plan: dict[Path, list[str]], config: CandidateConfig) -> pl.DataFrame:
    """Every planned topic's hybrid candidates from its blind retriever: (topic_id, content_id, row, the
    hybrid scores, label) rows, grouped by topic."""
    lexical = build_lexical(catalog)
    ids = catalog.content["id"]
    parts = []
    for path, topic_ids in plan.items():
        log.info("hybrid candidates (%d dense + %d lexical) for %d topics with %s", config.dense, config.lexical,
                 len(topic_ids), path)
        encoder = BiEncoder.load(path)
        with torch.inference_mode():
            index = in_memory_index(encoder, catalog, lexical)
            topics = catalog.topics_in_order(topic_ids)
            vectors = encoder.encode_topics(catalog, topics)
        found = hybrid_candidates(index, vectors, [lexical_text(p) for p in topic_parts(topics)],
                                  [Filters(language=lang) for lang in topics["language"].to_list()], config,
                                  topic_ids)
        for topic, frame in zip(topic_ids, found, strict=True):
            gold = catalog.gold[topic]
            content = ids.gather(frame["row"])
            parts.append(frame.with_columns(pl.lit(topic).alias("topic_id"), content.alias("content_id"),
                                            content.is_in(list(gold)).alias("label")))
    return pl.concat(parts)


def mine_neighbours(catalog: Catalog, plan: dict[Path, list[str]], k: int = NEIGHBOURS_SEARCHED) -> pl.DataFrame:
    """Every planned topic's `k` nearest other catalog topics by its blind retriever's topic vectors, as the
    index's TopicBank gives them at serving: (topic_id, neighbour, neighbour_score) rows."""
    parts = []
    for path, topic_ids in plan.items():
        encoder = BiEncoder.load(path)
        with torch.inference_mode():
            bank = topic_bank(encoder, catalog)
        position = {t: i for i, t in enumerate(bank.ids)}
        near = bank.neighbours(bank.vectors[[position[t] for t in topic_ids]], topic_ids, k)
        topic_of = pl.col("query").replace_strict(dict(enumerate(topic_ids)), return_dtype=pl.String)
        parts.append(near.with_columns(topic_of.alias("topic_id")).drop("query"))
    return pl.concat(parts)


@dataclass
class Mined:
    """A run's folds and what each topic's blind retriever found for it."""

    candidates: pl.DataFrame  # topic_id, content_id, row, the hybrid scores, label
    neighbours: pl.DataFrame | None  # topic_id, neighbour, neighbour_score; None: not asked for
    crossfit: CrossFit
    plan: dict[Path, list[str]]  # retriever -> the topics it mined


def cached(path: Path, make: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    """The frame at `path`, made and written there (atomically) when missing."""
    if path.is_file():
        return pl.read_parquet(path)
    frame = make()
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
    return frame


def ranked_rows(candidates: pl.DataFrame, crossfit: CrossFit) -> pl.DataFrame:
    """Candidates of the taking-part topics with their `fold` and `rank` (position by dense cosine)."""
    return candidates.filter(pl.col("topic_id").is_in(list(crossfit.assignment))).with_columns(
        pl.col("topic_id").replace_strict(crossfit.assignment, return_dtype=pl.Int32).alias("fold"),
        pl.col("dense_score").rank("ordinal", descending=True).over("topic_id").cast(pl.Int32).alias("rank"))


def candidates_for(catalog: Catalog, retrievers: Sequence[str], out: Path, options: CrossFitOptions,
                   neighbours: bool = False) -> Mined:
    """The run's folds, hybrid candidates and (with `neighbours`) topic neighbours, mined once per (catalog,
    retrievers, topics, candidate counts) and cached under `<out>/.cache/`."""
    crossfit = CrossFit.of(catalog, options)
    config = options.candidates
    plan = assign_miners(catalog, sorted(crossfit.assignment), [model_path(r) for r in retrievers])
    key = hash_json({"data": catalog.data_hash, "candidates": asdict(config), "format": MINED_FORMAT,
                     "edurank": edurank.__version__, "plan": {fingerprint(p): ids for p, ids in plan.items()}})
    cache = out / ".cache"
    candidates = cached(cache / f"candidates-{key[:16]}.parquet", lambda: mine_hybrid(catalog, plan, config))
    near = cached(cache / f"neighbours-{key[:16]}-{NEIGHBOURS_SEARCHED}.parquet",
                  lambda: mine_neighbours(catalog, plan)) if neighbours else None
    return Mined(candidates, near, crossfit, plan)
