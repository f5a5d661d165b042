"""The batch offline indexing job: embed a catalog's content, build a FAISS index, publish it atomically.

The index directory holds index.faiss, ids.parquet (row -> id, language, kind, title) and a manifest
naming the encoder (its base model) by fingerprint, so a server never pairs an index with the wrong model.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from edurank.artifacts import Manifest, ModelRef, hash_json, publish_artifact, resolve, staging_dir
from edurank.encoders import model_path, portable_name
from edurank.errors import InputError
from edurank.retriever.catalog import Catalog
from edurank.retriever.config import IndexConfig
from edurank.retriever.content_index import Companion, ContentIndex, build_faiss
from edurank.retriever.index_engines import embed_with_ray
from edurank.retriever.lexical import LexicalIndex, lexical_text
from edurank.retriever.model import BiEncoder
from edurank.retriever.rows import HASH_COLUMN, SEQ_COLUMN, LivePart, as_rows, live_part, with_live_part
from edurank.retriever.texts import content_parts, content_texts
from edurank.retriever.topic_bank import TopicBank

RUN_OPTIONS = ("engine", "ray_address", "ray_actors", "incremental")  # recorded apart, outside the run's hash
CHANGES_FILE = "changes.parquet"  # an incremental version's added, updated and deleted ids
log = logging.getLogger(__name__)


def build_index(encoder: BiEncoder, catalog: Catalog, out: Path, config: IndexConfig = IndexConfig(),
                progress: bool = True) -> Path:
    """Run the job and return the published `<out>/<version>/` directory."""
    started = time.time()
    if config.companion is not None:
        model_path(config.companion)  # a wrong path fails now, not after the catalog is embedded
    live = live_part(out)  # content the service added: in no catalog file, and its journal lines are gone
    if live is not None:
        catalog = with_live_part(catalog, live)
        log.info("keeping %d items added through the service (index version %s)", len(live.rows), live.version)
    texts = content_texts(catalog, encoder.builder)
    hashes = text_hashes(texts)

    def embed(batch: list[str]) -> np.ndarray:
        if config.engine == "ray":
            return embed_with_ray(encoder, batch, config.batch_size, config.ray_actors, config.ray_address)
        return encoder.encode(batch, config.batch_size, progress)

    previous = previous_index(out, encoder) if config.incremental else None
    if previous is None:
        vectors, changes, companion = embed(texts), None, None
    else:
        ids = catalog.content["id"].to_list()
        vectors, changes = reuse_vectors(previous, ids, hashes, texts, previous.vectors_of, embed)
        companion = reuse_companion(previous, config, catalog, ids, hashes)
    return publish_index(vectors, encoder, catalog, out, config, embed_seconds=time.time() - started,
                         hashes=hashes, changes=changes, companion=companion,
                         since=previous.manifest.version if previous is not None and previous.manifest else None,
                         live=live)


def text_hashes(texts: list[str]) -> list[str]:
    """A short digest of each text an item is embedded from: an unchanged digest means a reusable vector."""
    return [hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16] for text in texts]


def previous_index(out: Path, encoder: BiEncoder) -> ContentIndex | None:
    """The latest version under `out` when an incremental run can reuse it: verified, built by this
    encoder, with the text digests of its rows. Otherwise None, and everything is embedded (logged why)."""
    try:
        index = load_index(out, encoder)
    except InputError as err:
        log.warning("incremental: no reusable version under %s (%s); embedding everything", out, err)
        return None
    if HASH_COLUMN not in index.items.columns:
        log.warning("incremental: %s was built without text digests (an older edurank); embedding everything",
                    index.manifest.version if index.manifest else out)
        return None
    return index


def reuse_vectors(previous: ContentIndex, ids: list[str], hashes: list[str], texts: list[str],
                  stored: Callable[[np.ndarray], np.ndarray],
                  embed: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, pl.DataFrame]:
    """Every item's vector: the stored one (`stored(rows)`) where its id and text digest are unchanged, else
    `embed` of its text; and the ids added, updated and deleted since `previous`."""
    before = dict(zip(previous.items["id"].to_list(), previous.items[HASH_COLUMN].to_list(), strict=True))
    rows = {item: row for row, item in enumerate(previous.items["id"].to_list())}
    kept = [i for i, (item, digest) in enumerate(zip(ids, hashes, strict=True)) if before.get(item) == digest]
    todo = sorted(set(range(len(ids))) - set(kept))
    vectors = np.empty((len(ids), previous.index.d), dtype=np.float32)
    if kept:
        vectors[kept] = stored(np.array([rows[ids[i]] for i in kept], dtype=np.int64))
    if todo:
        vectors[todo] = embed([texts[i] for i in todo])
    current = set(ids)
    changes = pl.DataFrame({"id": [ids[i] for i in todo] + sorted(set(before) - current),
                            "change": ["updated" if ids[i] in before else "added" for i in todo]
                            + ["deleted"] * len(set(before) - current)})
    log.info("incremental: %d vectors reused, %d embedded (%s)", len(kept), len(todo),
             dict(changes["change"].value_counts().iter_rows()))
    return vectors, changes


def reuse_companion(previous: ContentIndex, config: IndexConfig, catalog: Catalog, ids: list[str],
                    hashes: list[str]) -> Companion | None:
    """The companion's vectors the same way, when the previous version stored the same companion's."""
    if config.companion is None:
        return None
    encoder = BiEncoder.load(config.companion)
    if previous.companion is None or previous.companion.model.fingerprint != encoder.fingerprint:
        return companion_of(encoder, catalog)
    texts = content_texts(catalog, encoder.builder)
    vectors, _ = reuse_vectors(previous, ids, hashes, texts, lambda rows: previous.companion.vectors[rows],
                               lambda batch: encoder.encode(batch))
    return Companion(vectors, ModelRef(portable_name(encoder.path), encoder.fingerprint))


def publish_index(vectors: np.ndarray, encoder: BiEncoder, catalog: Catalog, out: Path,
                  config: IndexConfig = IndexConfig(), params: dict[str, Any] | None = None,
                  embed_seconds: float | None = None, hashes: list[str] | None = None,
                  changes: pl.DataFrame | None = None, companion: Companion | None = None,
                  since: str | None = None, live: LivePart | None = None) -> Path:
    """Build the FAISS index over the catalog's content vectors (row i = content row i) and publish it with
    a manifest naming the encoder and the catalog (and, for an incremental run, what changed since the
    version it started from: counts in the manifest, the ids in changes.parquet)."""
    started = time.time()
    ran_on = {name: getattr(config, name) for name in RUN_OPTIONS}
    params = {**index_params(config, encoder.max_tokens), **(params or {})}
    if companion is None and config.companion:
        companion = companion_of(BiEncoder.load(config.companion), catalog)
    items = catalog.content.select("id", "language", "kind", "title")
    if SEQ_COLUMN in catalog.content.columns:  # rows added through the service: their texts are in no file
        items = as_rows(catalog.content)
    if hashes is not None:
        items = items.with_columns(pl.Series(HASH_COLUMN, hashes))
    run_hash = hash_json({"model": encoder.fingerprint, "catalog": catalog.data_hash, "params": params,
                          "companion": companion.model.fingerprint if companion else None,
                          "live": [live.version, live.seq] if live else None})
    data = {"hash": catalog.data_hash, "files": [str(p) for p in catalog.files],
            **({"live_seq": live.seq} if live else {})}
    with staging_dir(out, f"index-{run_hash[:12]}") as work:
        index = ContentIndex(build_faiss(vectors, config.index_type, config.nlist), items,
                             lexical=build_lexical(catalog) if config.lexical else None,
                             topics=topic_bank(encoder, catalog) if config.topics else None, companion=companion)
        index.save(work)
        if changes is not None:
            changes.write_parquet(work / CHANGES_FILE)
        seconds = {"build": time.time() - started, **({"embed": embed_seconds} if embed_seconds is not None else {})}
        return publish_artifact(
            work, out, run_hash, kind=ContentIndex.KIND, base_model=ModelRef(str(encoder.path), encoder.fingerprint),
            data=data, params=params, seconds=seconds, details={
                "ran_on": ran_on, **changed(changes, since), **({"tombstones": live.tombstones} if live else {}),
                "dimension": int(vectors.shape[1]), "count": int(vectors.shape[0]),
                "languages": catalog.content["language"].value_counts().sort("language").rows(),
                "items_per_second": round(len(vectors) / max(embed_seconds, 1e-9), 1) if embed_seconds else None})


def index_params(config: IndexConfig, max_tokens: int) -> dict[str, Any]:
    """The parameters an index's manifest records and its run hash reads: the options that change what it is,
    not how and where it ran (the same catalog, model and options give the same version hash)."""
    return {name: value for name, value in {**asdict(config), "max_tokens": max_tokens}.items()
            if name not in RUN_OPTIONS}


def publish_compacted(index: ContentIndex, previous: Manifest, out: Path, changes: pl.DataFrame, seq: int,
                      tombstones: dict[str, int | None] | None = None) -> Path:
    """Publish the live catalog's rows (retriever/live.py) as the next version after `previous`: its rows'
    texts in ids.parquet (they come from no catalog file), the changes since it in changes.parquet and the
    manifest, `data.live_seq`, the last journal record it holds, so a restart replays only later ones, and
    the deleted keys' channel versions (`details.tombstones`), so no older copy of one comes back."""
    run_hash = hash_json({"previous": previous.version, "live_seq": seq})
    with staging_dir(out, f"index-{run_hash[:12]}") as work:
        index.save(work)
        changes.write_parquet(work / CHANGES_FILE)
        return publish_artifact(
            work, out, run_hash, kind=ContentIndex.KIND, base_model=previous.base_model,
            data={**previous.data, "live_seq": seq}, params=previous.params,
            details={"ran_on": {"engine": "live"}, **changed(changes, previous.version),
                     "dimension": int(index.index.d), "count": int(index.index.ntotal),
                     "languages": index.items["language"].value_counts().sort("language").rows(),
                     "tombstones": tombstones or {}})


def changed(changes: pl.DataFrame | None, since: str | None) -> dict[str, Any]:
    """An incremental version's counts of added, updated and deleted items since version `since`, for its
    manifest."""
    if changes is None:
        return {}
    counts = dict(changes["change"].value_counts().iter_rows())
    return {"changes": {"since": since, **{kind: int(counts.get(kind, 0)) for kind in ("added", "updated", "deleted")}}}


def build_lexical(catalog: Catalog) -> LexicalIndex:
    """The character n-gram TF-IDF index over the catalog's content (row i = content row i)."""
    return LexicalIndex.build([lexical_text(parts) for parts in content_parts(catalog.content)],
                              catalog.content["language"].to_list())


def topic_bank(encoder: BiEncoder, catalog: Catalog) -> TopicBank:
    """Every catalog topic embedded by the index's encoder."""
    return TopicBank(encoder.encode_topics(catalog), catalog.topics["id"].to_list())


def companion_of(encoder: BiEncoder, catalog: Catalog, progress: bool = False) -> Companion:
    """The catalog's content embedded by a second encoder (row i = content row i)."""
    vectors = encoder.encode(content_texts(catalog, encoder.builder), progress=progress)
    return Companion(vectors, ModelRef(portable_name(encoder.path), encoder.fingerprint))


def in_memory_index(encoder: BiEncoder, catalog: Catalog, lexical: LexicalIndex | None = None,
                    progress: bool = False, companion: BiEncoder | None = None,
                    content_vectors: np.ndarray | None = None) -> ContentIndex:
    """What the indexing job builds (exact FAISS, lexical index, topic vectors, the companion's vectors when
    one is given), kept in memory: evaluations and miners search a catalog with a model that has no published
    index. `lexical` reuses one already built (it does not depend on the encoder); `content_vectors`, the
    encoder's vectors of the content already embedded (a miner's cache)."""
    vectors = encoder.encode_content(catalog, progress=progress) if content_vectors is None else content_vectors
    return ContentIndex(build_faiss(vectors),
                        catalog.content.select("id", "language", "kind", "title"),
                        lexical=lexical or build_lexical(catalog), topics=topic_bank(encoder, catalog),
                        companion=companion_of(companion, catalog) if companion is not None else None)


def load_index(directory: str | Path, encoder: BiEncoder) -> ContentIndex:
    """Load the index at `directory` (a version or an index root), refusing one built by another model."""
    return ContentIndex.load(resolve(directory), encoder.fingerprint)


def search_text(index: ContentIndex, encoder: BiEncoder, queries: list[str], k: int = 10,
                languages: list[str] | None = None, kinds: list[str] | None = None) -> list[pl.DataFrame]:
    """Free-text queries -> per query a frame of (rank, score, id, language, kind, title)."""
    vectors = encoder.encode(queries)
    scores, rows = index.search(vectors, k, languages, kinds)
    results = []
    for query_scores, query_rows in zip(scores, rows, strict=True):
        keep = query_rows >= 0
        frame = index.items[query_rows[keep].tolist()].with_columns(
            pl.Series("score", query_scores[keep]).round(4))
        results.append(frame.with_row_index("rank", offset=1).select("rank", "score", "id", "language", "kind",
                                                                     "title"))
    return results
