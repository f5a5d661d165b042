"""What both second-stage trainers share: topic folds with their cross-fitting plan, and each topic's hybrid
candidates (and nearest catalog topics) mined by a retriever that never trained on it.

The ranker (LightGBM) and the cross-encoder read the same candidate rows under the same folds, so the
cross-encoder's out-of-fold logits can join the ranker's features row for row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

import edurank
from edurank.artifacts import atomic_path, hash_json
from edurank.encoders import fingerprint, model_path
from edurank.errors import InputError
from edurank.feedback import read_labels
from edurank.reranker.lightgbm.config import NEEDS_NEIGHBOURS
from edurank.reranker.lightgbm.features import Graph, ItemVectors
from edurank.retriever.catalog import Catalog
from edurank.retriever.config import CandidateConfig
from edurank.retriever.hybrid import Filters, hybrid_candidates
from edurank.retriever.index_job import build_lexical, in_memory_index, topic_bank
from edurank.retriever.lexical import lexical_text
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import topic_parts
from edurank.retriever.topic_bank import NEIGHBOURS_SEARCHED
from edurank.retriever.topic_folds import TRAIN_ONLY, extend_folds, seen_topics, topic_folds, training_topics
from edurank.training.config import CrossFitOptions

log = logging.getLogger(__name__)
MINED_FORMAT = 3  # of the cached candidates' columns; bump when mining adds or changes one


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
    def of(cls, catalog: Catalog, options: CrossFitOptions, cut: Catalog | None = None) -> CrossFit:
        """The folds of `catalog`'s linked topics; with `cut` (the catalog before a curator's feedback changed
        its links), its folds carried over to `catalog` (`extend_folds`)."""
        split = {"share": options.hold_out_items, "seed": options.seed}
        assignment = topic_folds(cut or catalog, options.folds, options.seed, options.group_by)
        if cut is not None:
            assignment = extend_folds(assignment, catalog, options.folds, options.seed, options.group_by)
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


def mine_hybrid(catalog: Catalog, plan: dict[Path, list[str]], config: CandidateConfig,
                cache: Path) -> pl.DataFrame:
    """Every planned topic's hybrid candidates from its blind retriever: (topic_id, content_id, row, the
    hybrid scores) rows, grouped by topic; no labels (`labelled` adds them from the catalog's links). The
    retriever's content vectors come from (or go to) `cache`, which the ranker's vector features read."""
    lexical = build_lexical(catalog)
    ids = catalog.content["id"]
    parts = []
    for path, topic_ids in plan.items():
        log.info("hybrid candidates (%d dense + %d lexical) for %d topics with %s", config.dense, config.lexical,
                 len(topic_ids), path)
        encoder = BiEncoder.load(path)
        with torch.inference_mode():
            index = in_memory_index(encoder, catalog, lexical,
                                    content_vectors=model_vectors(catalog, path, cache, topics=False)["content"])
            topics = catalog.topics_in_order(topic_ids)
            vectors = encoder.encode_topics(catalog, topics)
        found = hybrid_candidates(index, vectors, [lexical_text(p) for p in topic_parts(topics)],
                                  [Filters(language=lang) for lang in topics["language"].to_list()], config,
                                  topic_ids)
        for topic, frame in zip(topic_ids, found, strict=True):
            parts.append(frame.with_columns(pl.lit(topic).alias("topic_id"),
                                            ids.gather(frame["row"]).alias("content_id")))
    return pl.concat(parts)


PAIR = pl.concat_str("topic_id", "content_id", separator="\x1f")  # one string per (topic, item) pair


@dataclass(frozen=True)
class Feedback:
    """A curator's decisions on pairs the catalog knows (`topic_id, content_id, label`: True accepted, False
    rejected) and what the manifest records of them."""

    labels: pl.DataFrame
    summary: dict[str, Any]

    def outside(self, candidates: pl.DataFrame) -> dict[str, int]:
        """Accepted and rejected pairs of the taking-part topics that are not among their mined candidates: no
        row has their features, so they train nothing (a served list comes from the same hybrid candidates,
        so what a curator judged on it is among them when the served retriever is the one that mined)."""
        taking_part = self.labels.filter(pl.col("topic_id").is_in(candidates["topic_id"].unique().implode()))
        outside = taking_part.filter(~PAIR.is_in(candidates.select(PAIR.alias("pair"))["pair"].implode()))
        return {"accepted_outside_candidates": int(outside["label"].sum()),
                "rejected_outside_candidates": int((~outside["label"]).sum())}


def with_feedback(catalog: Catalog, source: str) -> tuple[Catalog, Feedback]:
    """The catalog with a curator's decisions (a feedback store or its export, `edurank.feedback.read_labels`)
    applied to its links: an accepted pair becomes a link (a positive of its topic, and a link the graph
    features of other topics read, cross-fitted like the catalog's own), a rejected one stops being one (the
    curator overrides the catalog) and stays a negative; pairs naming a topic or item the catalog lacks are
    skipped with a warning. A topic only feedback links takes part in training like any linked topic."""
    try:
        labels = read_labels(source)
    except InputError as err:
        raise InputError(f"--feedback {source}: {err}") from err
    known = labels.filter(pl.col("topic_id").is_in(catalog.topics["id"].implode())
                          & pl.col("content_id").is_in(catalog.content["id"].implode()))
    skipped = len(labels) - len(known)
    if skipped:
        log.warning("--feedback %s: %d of %d decisions name a topic or item not in the catalog; skipped", source,
                    skipped, len(labels))
    before = catalog.correlations.select(PAIR.alias("pair"))["pair"].implode()
    accepted = known.filter(pl.col("label")).select("topic_id", "content_id")
    rejected = known.filter(~pl.col("label")).select(PAIR.alias("pair"))["pair"]
    links = pl.concat([catalog.correlations, accepted]).unique(maintain_order=True) \
        .filter(~PAIR.is_in(rejected.implode()))
    changed = replace(catalog, correlations=links)
    summary = {"source": source, "hash": hash_json(known.sort("topic_id", "content_id").rows()),
               "accepted": len(accepted), "rejected": len(rejected), "skipped": skipped,
               "links_added": int((~accepted.select(PAIR.is_in(before)).to_series()).sum()),
               "links_removed": int(rejected.is_in(before).sum()),
               "topics_added": len(set(changed.gold) - set(catalog.gold)),
               "topics_dropped": len(set(catalog.gold) - set(changed.gold))}
    log.info("--feedback %s: %s", source, summary)
    return changed, Feedback(known, summary)


def labelled(candidates: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """The candidates with `label`: whether the catalog links the pair. Set on every load, never cached, so
    cached candidates follow edited links and a curator's feedback."""
    links = catalog.correlations.select(PAIR.alias("pair"))["pair"]
    return candidates.with_columns(PAIR.is_in(links.implode()).alias("label"))


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


def encoded(catalog: Catalog, path: Path, cache: Path, what: dict[str, Any],
            encode: Callable[[BiEncoder], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays `encode` makes with the retriever at `path`, once per (texts, retriever, `what`, mining
    format, edurank), cached under `cache`."""
    key = hash_json({"data": catalog.texts_hash, "model": fingerprint(path), **what, "format": MINED_FORMAT,
                     "edurank": edurank.__version__})[:16]
    stored = cache / f"vectors-{key}.npz"
    if not stored.is_file():
        encoder = BiEncoder.load(path)
        with torch.inference_mode():
            arrays = encode(encoder)
        stored.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(stored) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # a handle: np.savez would append .npz to a path
    with np.load(stored, allow_pickle=False) as loaded:
        return {name: loaded[name] for name in loaded.files}


def model_vectors(catalog: Catalog, path: Path, cache: Path, topics: bool = True) -> dict[str, np.ndarray]:
    """A model's vectors of the catalog's content (`content`, index row order) and, with `topics`, of its
    topics (`topics`, catalog order)."""
    def encode(encoder: BiEncoder) -> dict[str, np.ndarray]:
        arrays = {"content": encoder.encode_content(catalog)}
        return {**arrays, "topics": encoder.encode_topics(catalog)} if topics else arrays

    return encoded(catalog, path, cache, {"parts": ("topics", "content") if topics else ("content",)}, encode)


@dataclass
class Mined:
    """A run's folds and what each topic's blind retriever found for it."""

    candidates: pl.DataFrame  # topic_id, content_id, row, the hybrid scores, label
    neighbours: pl.DataFrame | None  # topic_id, neighbour, neighbour_score; None: not asked for
    crossfit: CrossFit
    plan: dict[Path, list[str]]  # retriever -> the topics it mined
    vectors: dict[Path, np.ndarray] | None = None  # retriever -> its content vectors; None: not asked for
    parts: dict[str, np.ndarray] | None = None  # topic -> its parts' vectors by its miner; None: not asked for

    def item_vectors(self, topic_ids: Sequence[str]) -> ItemVectors | None:
        """(query i = topic_ids[i], index rows) -> the rows' vectors by the retriever that mined the topic."""
        if self.vectors is None:
            return None
        miner = {topic: path for path, ids in self.plan.items() for topic in ids}
        by_query = [self.vectors[miner[topic]] for topic in topic_ids]
        return lambda query, rows: by_query[query][rows]

    def part_vectors(self, topic_ids: Sequence[str]) -> np.ndarray | None:
        """(query i = topic_ids[i], TOPIC_PARTS, dimension): each topic's parts by the retriever that mined it."""
        return None if self.parts is None else np.stack([self.parts[topic] for topic in topic_ids])


def mine_parts(catalog: Catalog, path: Path, topic_ids: list[str], cache: Path) -> dict[str, np.ndarray]:
    """These topics' parts (title, breadcrumbs, description), each embedded alone by the retriever at `path`
    (NaN for an empty part)."""
    vectors = encoded(catalog, path, cache, {"topics": topic_ids}, lambda encoder: {
        "parts": encoder.encode_parts(topic_parts(catalog.topics_in_order(topic_ids)))})["parts"]
    return dict(zip(topic_ids, vectors, strict=True))


def cached_topics(path: Path, topic_ids: list[str], mine: Callable[[list[str]], pl.DataFrame]) -> pl.DataFrame:
    """These topics' rows from the cache at `path`, in the order given; the topics it lacks are mined and added
    (written atomically), so a run with more topics (feedback on new ones) mines only those."""
    stored = pl.read_parquet(path) if path.is_file() else None
    have = set() if stored is None else set(stored["topic_id"].unique().to_list())
    missing = [t for t in topic_ids if t not in have]
    if missing:
        mined = mine(missing)
        stored = mined if stored is None else pl.concat([stored, mined], how="vertical_relaxed")
        with atomic_path(path) as tmp:
            stored.write_parquet(tmp)
    assert stored is not None
    position = {t: i for i, t in enumerate(topic_ids)}
    return stored.filter(pl.col("topic_id").is_in(topic_ids)).sort(
        pl.col("topic_id").replace_strict(position, return_dtype=pl.Int64), maintain_order=True)


def ranked_rows(candidates: pl.DataFrame, crossfit: CrossFit) -> pl.DataFrame:
    """Candidates of the taking-part topics with their `fold` and `rank` (position by dense cosine)."""
    return candidates.filter(pl.col("topic_id").is_in(list(crossfit.assignment))).with_columns(
        pl.col("topic_id").replace_strict(crossfit.assignment, return_dtype=pl.Int32).alias("fold"),
        pl.col("dense_score").rank("ordinal", descending=True).over("topic_id").cast(pl.Int32).alias("rank"))


def mined_for(groups: Sequence[str]) -> dict[str, bool]:
    """What `candidates_for` must also mine for a ranker reading these feature groups."""
    return {"neighbours": bool(NEEDS_NEIGHBOURS & set(groups)), "item_vectors": "neighbour_items" in groups,
            "parts": "topic_parts" in groups}


def candidates_for(catalog: Catalog, retrievers: Sequence[str], out: Path, options: CrossFitOptions,
                   neighbours: bool = False, cut: Catalog | None = None, item_vectors: bool = False,
                   parts: bool = False) -> Mined:
    """The run's folds (`cut`: see CrossFit.of), hybrid candidates labelled by the catalog's links, (with
    `neighbours`) topic neighbours, (with `item_vectors` or `parts`) each retriever's content vectors and
    (with `parts`) each topic's part vectors. Each topic is mined once per (topics and content files,
    retriever, candidate counts) and cached under `<out>/.cache/`: mining reads no links."""
    crossfit = CrossFit.of(catalog, options, cut)
    config = options.candidates
    plan = assign_miners(catalog, sorted(crossfit.assignment), [model_path(r) for r in retrievers])
    cache = out / ".cache"
    candidates, near = [], []
    for path, ids in plan.items():
        key = hash_json({"data": catalog.texts_hash, "candidates": asdict(config), "format": MINED_FORMAT,
                         "edurank": edurank.__version__, "retriever": fingerprint(path)})[:16]
        candidates.append(cached_topics(
            cache / f"candidates-{key}.parquet", ids,
            lambda missing, path=path: mine_hybrid(catalog, {path: missing}, config, cache)))
        if neighbours:
            near.append(cached_topics(cache / f"neighbours-{key}-{NEIGHBOURS_SEARCHED}.parquet", ids,
                                      lambda missing, path=path: mine_neighbours(catalog, {path: missing})))
    vectors = {path: model_vectors(catalog, path, cache, topics=False)["content"] for path in plan} \
        if item_vectors or parts else None
    part_vectors = {topic: vector for path, ids in plan.items()
                    for topic, vector in mine_parts(catalog, path, ids, cache).items()} if parts else None
    return Mined(labelled(pl.concat(candidates), catalog), pl.concat(near) if neighbours else None, crossfit, plan,
                 vectors, part_vectors)
