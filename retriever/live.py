"""The live catalog: content added, updated and deleted while the service runs, searched with the published
index at once, durable before it is acknowledged, and folded into a new index version when it grows.

- `Journal`: every accepted change is one line (CRC-checked JSON holding the rows and their vectors) appended
  and fsynced before the caller answers, so a kill -9 after a 2xx loses nothing; a torn last line (a crash
  mid-write, never acknowledged) is cut off when the journal is opened.
- `LiveIndex`: a `ContentIndex` over the published version's rows plus the live ones (their vectors, lexical
  rows and companion vectors kept apart, so adding one never copies the index) with the replaced and deleted
  rows masked out. Row i is `items` row i, which holds each row's texts, so every stage of the recommend
  pipeline sees a new item on the next request.
- `LiveCatalog`: the one writer. Items are keyed by (channel_id, id); a change carrying an older
  `channel_version` than the stored one is skipped. When the live part passes `compact_rows`, a background
  compaction publishes the whole as a new index version (through `publish_compacted`, as `edurank index
  --incremental` publishes, with the manifest saying what changed since the previous version) and drops
  the journal lines it holds; a crash at any point leaves the previous version plus the journal serving.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from edurank.artifacts import LATEST, atomic_path
from edurank.retriever.content_index import Appended, Companion, ContentIndex, build_faiss
from edurank.retriever.index_job import publish_compacted, text_hashes
from edurank.retriever.lexical import lexical_text
from edurank.retriever.model import BiEncoder
from edurank.retriever.rows import (
    HASH_COLUMN,
    KEY_SEPARATOR,
    ROW_SCHEMA,
    SEQ_COLUMN,
    as_rows,
    key_of,
    keys_of,
    manifest_seq,
)
from edurank.retriever.texts import TextBuilder, content_parts

log = logging.getLogger(__name__)
JOURNAL_FILE = "journal.log"
MAX_CHUNKS = 64  # of the rows frame before its live part is rechunked


def encode_array(array: np.ndarray | None) -> dict[str, Any] | None:
    if array is None:
        return None
    return {"shape": list(array.shape), "data": base64.b64encode(np.ascontiguousarray(array, "<f4").tobytes()).decode()}


def decode_array(stored: dict[str, Any] | None) -> np.ndarray | None:
    if stored is None:
        return None
    return np.frombuffer(base64.b64decode(stored["data"]), dtype="<f4").reshape(stored["shape"]).astype(np.float32)


class Journal:
    """Append-only, fsynced change log: one line per change, `<crc32 hex> <json>`. Its folder is made on the
    first write, so a read-only one serves what it holds (writes raise OSError)."""

    def __init__(self, directory: Path):
        self.path = directory / JOURNAL_FILE
        self.records = self.read_and_repair()

    def read_and_repair(self) -> list[dict[str, Any]]:
        """The intact records, oldest first; a torn or damaged tail (a write the crash cut short, so never
        acknowledged) is truncated away, so later appends follow the last good line."""
        if not self.path.is_file():
            return []
        records, good = [], 0
        with open(self.path, "rb") as handle:
            for line in handle:
                record = self.parse(line)
                if record is None:
                    log.warning("journal %s: a damaged line after %d good ones; dropping it and what follows",
                                self.path, len(records))
                    break
                records.append(record)
                good += len(line)
        if good != self.path.stat().st_size:
            with open(self.path, "r+b") as handle:
                handle.truncate(good)
                os.fsync(handle.fileno())
        return records

    @staticmethod
    def parse(line: bytes) -> dict[str, Any] | None:
        if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
            return None
        body = line[9:-1]
        try:
            if int(line[:8], 16) != zlib.crc32(body):
                return None
            record: dict[str, Any] = json.loads(body)
        except ValueError:
            return None
        return record

    @staticmethod
    def line(record: dict[str, Any]) -> bytes:
        body = json.dumps(record, separators=(",", ":")).encode()
        return b"%08x %s\n" % (zlib.crc32(body), body)

    def append(self, record: dict[str, Any]) -> None:
        """Durable on return: written, flushed and fsynced (the directory too, when the file is new)."""
        new = not self.path.exists()
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            size = handle.tell()
            try:
                handle.write(self.line(record))
                handle.flush()
                os.fsync(handle.fileno())
            except BaseException:  # a part-written line would cut every later record off at the next repair
                handle.truncate(size)
                raise
        if new:
            sync_directory(self.path.parent)

    def keep(self, records: list[dict[str, Any]]) -> None:
        """Replace the file by these records (those a compaction did not fold in), atomically."""
        with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
            handle.writelines(self.line(record) for record in records)
            handle.flush()
            os.fsync(handle.fileno())
        sync_directory(self.path.parent)


def sync_tree(version: Path) -> None:
    """fsync a published version's files, its directory, its root (the rename) and the root's LATEST."""
    for path in version.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for directory in [*(p for p in version.rglob("*") if p.is_dir()), version, version.parent]:
        sync_directory(directory)
    latest = version.parent / LATEST
    if latest.is_file():
        with open(latest, "rb") as handle:
            os.fsync(handle.fileno())


def sync_directory(directory: Path) -> None:
    """fsync a directory, so a file created or renamed in it survives a power cut too."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@dataclass
class LiveIndex(ContentIndex):
    """The published index's rows (`base_rows` of them, in its FAISS index) and the live rows after them
    (`tail`: their retriever vectors; the lexical index and the companion hold theirs as tails too).
    `items` holds every row's ROW_SCHEMA columns; `dead` masks rows replaced or deleted since."""

    base_rows: int = 0
    tail: Appended = field(default_factory=lambda: Appended.empty(0))
    dead: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    seq: int = 0  # the last journal record applied

    @classmethod
    def over(cls, base: ContentIndex, rows: pl.DataFrame) -> LiveIndex:
        """The published index with no live rows; `rows` are its rows' ROW_SCHEMA columns."""
        seq = manifest_seq(base.manifest)
        return cls(base.index, as_rows(rows), base.manifest, base.lexical, base.topics, base.companion,
                   base_rows=len(rows), tail=Appended.empty(base.index.d),
                   dead=np.zeros(len(rows), dtype=bool), seq=seq)

    @property
    def live_rows(self) -> int:
        """Rows the published version does not hold as they are: added, replacing another, or masked."""
        return len(self.items) - self.base_rows + int(self.dead[:self.base_rows].sum())

    @property
    def alive(self) -> int:
        return len(self.items) - int(self.dead.sum())

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        return self.tail.gather(rows, self.base_rows, super().vectors_of)

    def excluded(self) -> np.ndarray | None:
        return self.dead if self.dead.any() else None

    def search(self, queries: np.ndarray, k: int, languages: list[str] | None = None,
               kinds: list[str] | None = None, channels: list[str] | None = None,
               exclude_channels: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) per query over the published and the live rows; -1 rows pad. Unfiltered, the
        published index is searched for k plus its masked rows, which are then dropped (no selector over
        every alive row)."""
        filtered = bool(languages or kinds or channels or exclude_channels)
        allowed = self.allowed_rows(languages, kinds, channels, exclude_channels) if filtered else None
        k = max(1, min(k, len(self.items)))
        base_allowed = None if allowed is None else allowed[allowed < self.base_rows]
        masked = int(self.dead[:self.base_rows].sum())
        if self.base_rows and (base_allowed is None or len(base_allowed)):
            wanted = min(k + (masked if base_allowed is None else 0), self.base_rows)
            scores, rows = self.search_rows(queries, wanted, base_allowed)
        else:
            scores = np.full((len(queries), 0), -np.inf, np.float32)
            rows = np.full((len(queries), 0), -1, np.int64)
        if allowed is None:
            tail_rows = np.flatnonzero(~self.dead[self.base_rows:]) + self.base_rows
            vectors = self.tail.rows if len(tail_rows) == len(self.tail) else \
                self.tail.rows[tail_rows - self.base_rows]
        else:
            tail_rows = allowed[allowed >= self.base_rows]
            vectors = self.tail.rows[tail_rows - self.base_rows]
        if len(tail_rows):
            scores = np.concatenate([scores, queries @ vectors.T], axis=1)
            rows = np.concatenate([rows, np.broadcast_to(tail_rows, (len(queries), len(tail_rows)))], axis=1)
        valid = rows >= 0
        valid[valid] = ~self.dead[rows[valid]]
        scores = np.where(valid, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores, rows = np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)
        pad = k - scores.shape[1]
        if pad > 0:
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
        return scores.astype(np.float32), np.where(np.isfinite(scores), rows, -1)

    def with_rows(self, rows: pl.DataFrame, vectors: np.ndarray, lexical_texts: Sequence[str],
                  companion: np.ndarray | None, replaced: Sequence[int], seq: int) -> LiveIndex:
        """A new snapshot: `rows` (ROW_SCHEMA) appended with their vectors, the `replaced` rows masked."""
        dead = np.concatenate([self.dead, np.zeros(len(rows), dtype=bool)])
        dead[list(replaced)] = True
        if not len(rows):
            return dataclasses.replace(self, dead=dead, seq=seq)
        items = pl.concat([self.items, rows])  # a chunk more: rechunked now and then, not copied per change
        if items.n_chunks() > MAX_CHUNKS:
            items = pl.concat([items.slice(0, self.base_rows), items.slice(self.base_rows).rechunk()])
        lexical = (self.lexical.with_rows(lexical_texts, rows["language"].to_list())
                   if self.lexical is not None else None)
        partner = self.companion
        if partner is not None:
            if companion is None:  # never leave the companion's rows out of line with the index's
                log.warning("live rows without companion vectors: their companion cosine is 0")
                companion = np.zeros((len(rows), partner.vectors.shape[1]), dtype=np.float32)
            partner = partner.with_rows(companion)
        return dataclasses.replace(self, items=items, lexical=lexical, companion=partner,
                                   tail=self.tail.plus(vectors.astype(np.float32)), dead=dead, seq=seq)

    def compacted(self) -> ContentIndex:
        """Every alive row in one plain index (the published version's index type), to publish."""
        alive = np.flatnonzero(~self.dead)
        vectors = self.vectors_of(alive)
        kind = "ivf" if isinstance(self.index, faiss.IndexIVF) else \
            "hnsw" if isinstance(self.index, faiss.IndexHNSW) else "flat"
        companion = (Companion(self.companion.rows(alive), self.companion.model)
                     if self.companion is not None else None)
        return ContentIndex(build_faiss(vectors, kind), self.items[alive], self.manifest,
                            self.lexical.select(alive) if self.lexical is not None else None, self.topics, companion)


@dataclass(frozen=True)
class Outcome:
    """What a change did, per key: written (added or updated), skipped as stale, deleted, or not found."""

    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seq: int | None = None


Listener = Callable[[LiveIndex, int], None]  # the new snapshot, and the first row new in it


class LiveCatalog:
    """The one writer of the live catalog: checks versions, journals, applies, compacts. Readers take
    `index` (an immutable snapshot) and keep it for the whole request."""

    def __init__(self, directory: Path, index: LiveIndex, fingerprint: str, out: Path | None = None,
                 compact_rows: int = 5000, listener: Listener | None = None,
                 embed: Callable[[pl.DataFrame], tuple[np.ndarray, np.ndarray | None]] | None = None):
        self.journal = Journal(directory)
        self.fingerprint, self.out, self.compact_rows = fingerprint, out, compact_rows
        self.listener, self.embed = listener, embed
        self.lock = threading.Lock()
        # deleted keys -> their channel version, so none comes back older; a compacted version's manifest keeps them
        self.tombstones: dict[str, int | None] = dict(index.manifest.details.get("tombstones", {})) \
            if index.manifest is not None else {}
        self.compacting: threading.Thread | None = None  # the background compaction, if one was started
        self.compaction = threading.Lock()  # held by the compaction running, background or called
        self.compactions: list[dict[str, Any]] = []
        self.retry_at = 0  # after a failed compaction: the live rows at which to try again (not on every write)
        self.index = index
        self.reindex()
        replayed = 0
        for record in self.journal.records:
            if record["seq"] > self.index.seq:
                self.replay(record)  # one that cannot be applied stops the load (/ready says why): never skipped
                replayed += 1
        self.next_seq = max([self.index.seq, *(r["seq"] for r in self.journal.records)]) + 1
        if replayed:
            log.info("live catalog: %d journal records replayed (%d live rows)", replayed, self.index.live_rows)

    def reindex(self) -> None:
        """The key -> row and key -> channel_version maps of the current snapshot's alive rows."""
        alive = ~self.index.dead
        frame = self.index.items.select("channel_id", "id", "channel_version").with_row_index("row")
        frame = frame.filter(pl.Series(alive))
        self.rows = {key_of(c, i): r for r, c, i, _ in frame.iter_rows()}
        self.versions: dict[str, int | None] = {key_of(c, i): v for _, c, i, v in frame.iter_rows()}
        self.versions.update(self.tombstones)

    def newer(self, key: str, version: int | None) -> bool:
        """Whether a change at `version` may overwrite what is stored (never an older channel version)."""
        stored = self.versions.get(key)
        return stored is None or version is None or version >= stored

    def upsert(self, rows: pl.DataFrame, vectors: np.ndarray, lexical_texts: Sequence[str],
               companion: np.ndarray | None = None, fingerprint: str | None = None) -> Outcome:
        """Add or replace `rows` (ROW_SCHEMA, with their text digests) with their vectors; durable on return.
        Vectors of another encoder (`fingerprint`: a reload swapped it meanwhile) are embedded again."""
        if fingerprint is not None and fingerprint != self.fingerprint and self.embed is not None:
            vectors, companion = self.embed(rows)
        keys = keys_of(rows)
        last = {key: i for i, key in enumerate(keys)}  # a key sent twice in one change: the later one counts
        with self.lock:
            keep = [i for i, (key, version) in enumerate(zip(keys, rows["channel_version"], strict=True))
                    if last[key] == i and self.newer(key, version)]
            stale = [keys[i] for i in range(len(rows)) if last[keys[i]] == i and i not in set(keep)]
            if not keep:
                return Outcome(stale=stale)
            seq = self.next_seq
            rows = rows[keep].with_columns(pl.lit(seq, pl.Int64).alias(SEQ_COLUMN))
            record = {"seq": seq, "op": "upsert", "model": self.fingerprint, "rows": rows.to_dicts(),
                      "vectors": encode_array(vectors[keep]), "lexical": [lexical_texts[i] for i in keep],
                      "companion": encode_array(companion[keep] if companion is not None else None)}
            self.journal.append(record)
            self.next_seq += 1
            self.apply(record)
            outcome = Outcome(written=[keys[i] for i in keep], stale=stale, seq=seq)
        self.maybe_compact()
        return outcome

    def delete(self, keys: Sequence[tuple[str | None, str]], versions: Sequence[int | None]) -> Outcome:
        """Remove these (channel_id, id) items, unless a newer channel version of one is stored."""
        asked = dict(zip((key_of(c, i) for c, i in keys), versions, strict=True))  # a key sent twice: the later
        with self.lock:
            found = [k for k, v in asked.items() if k in self.rows and self.newer(k, v)]
            stale = [k for k, v in asked.items() if k in self.rows and not self.newer(k, v)]
            missing = [k for k in asked if k not in self.rows]
            if not found:
                return Outcome(stale=stale, missing=missing)
            seq = self.next_seq
            record = {"seq": seq, "op": "delete", "keys": found, "versions": [asked[k] for k in found]}
            self.journal.append(record)
            self.next_seq += 1
            self.apply(record)
            outcome = Outcome(deleted=found, stale=stale, missing=missing, seq=seq)
        self.maybe_compact()
        return outcome

    def replay(self, record: dict[str, Any]) -> None:
        """Apply a journal record at start-up; vectors of another encoder are embedded again."""
        if record["op"] == "upsert" and record.get("model") != self.fingerprint:
            if self.embed is None:
                raise ValueError("the journal holds vectors of another encoder and none is given to re-embed")
            rows = pl.DataFrame(record["rows"], schema=ROW_SCHEMA)
            vectors, companion = self.embed(rows)
            record = {**record, "vectors": encode_array(vectors), "companion": encode_array(companion)}
        self.apply(record)

    def apply(self, record: dict[str, Any]) -> None:
        """Make a journalled change visible: a new snapshot, then the listener (the recommender's swap)."""
        first = len(self.index.items)
        if record["op"] == "upsert":
            rows = pl.DataFrame(record["rows"], schema=ROW_SCHEMA)
            keys = keys_of(rows)
            replaced = [self.rows[k] for k in keys if k in self.rows]
            vectors = decode_array(record["vectors"])
            assert vectors is not None
            companion = decode_array(record.get("companion"))
            if self.index.companion is not None and companion is None and self.embed is not None:
                companion = self.embed(rows)[1]
            self.index = self.index.with_rows(rows, vectors, record["lexical"], companion, replaced, record["seq"])
            for offset, (key, version) in enumerate(zip(keys, rows["channel_version"], strict=True)):
                self.rows[key], self.versions[key] = first + offset, version
                self.tombstones.pop(key, None)
        else:
            replaced = [self.rows.pop(k) for k in record["keys"] if k in self.rows]
            self.index = self.index.with_rows(self.index.items.clear(), np.empty((0, self.index.index.d)), [], None,
                                              replaced, record["seq"])
            for key, version in zip(record["keys"], record["versions"], strict=True):
                self.tombstones[key] = self.versions[key] = version if version is not None else self.versions.get(key)
        if self.listener is not None:
            self.listener(self.index, first)

    def maybe_compact(self) -> None:
        """Start a background compaction when the live part has grown past `compact_rows`."""
        if self.out is None or self.index.live_rows < max(self.compact_rows, self.retry_at):
            return
        with self.lock:
            if self.compacting is not None and self.compacting.is_alive():
                return
            self.compacting = threading.Thread(target=self.compact, name="compact-index", daemon=True)
            self.compacting.start()

    def compact(self) -> Path | None:
        """Publish the current rows as a new index version, then drop the journal lines it holds; the
        changes journalled meanwhile are applied again on top of it. Any failure leaves the previous
        version and the journal serving (logged)."""
        with self.compaction:  # one at a time: a second one over an older snapshot would drop newer journal lines
            return self.compact_now()

    def compact_now(self) -> Path | None:
        """`compact`'s work, under its lock."""
        if self.out is None:
            return None
        started = time.perf_counter()
        snapshot = self.index
        if snapshot.manifest is None or snapshot.seq == manifest_seq(snapshot.manifest):
            return None
        try:
            with self.lock:  # not while a writer appends: its half-written line would be cut as a torn tail
                folded = [r for r in self.journal.read_and_repair() if r["seq"] <= snapshot.seq]
                tombstones = dict(self.tombstones)
            published = publish_compacted(snapshot.compacted(), snapshot.manifest, self.out, changes(snapshot, folded),
                                          snapshot.seq, tombstones)
            sync_tree(published)  # on disk before the journal lines it replaces are dropped
            base = ContentIndex.load(published, self.fingerprint)
        except Exception:  # the previous version and the journal keep serving; the next growth retries
            log.exception("live catalog: compaction failed; the previous index version and the journal serve on")
            self.retry_at = snapshot.live_rows + max(1, self.compact_rows // 4)
            return None
        with self.lock:
            later = [r for r in self.journal.read_and_repair() if r["seq"] > snapshot.seq]
            self.index = LiveIndex.over(base, base.items)
            self.reindex()
            if self.listener is not None:  # every row moved (masked ones are gone): none is kept as it was
                self.listener(self.index, 0)
            for record in later:
                self.apply(record)
            self.journal.keep(later)
        seconds = round(time.perf_counter() - started, 2)
        self.compactions.append({"version": published.name, "rows": len(base.items), "seconds": seconds})
        log.info("live catalog: compacted %d rows into index version %s in %.1f s", len(base.items),
                 published.name, seconds)
        return published

    def stop_compacting(self) -> Path | None:
        """No compaction starts any more, and a running one finishes first (a reload's new writer then reads
        the journal it left); returns where compactions went, to resume (`out`) if the reload is refused."""
        out, self.out = self.out, None
        with self.compaction:  # waits for the running one, background or called
            return out

    def close(self) -> None:
        self.stop_compacting()

    def describe(self) -> dict[str, Any]:
        index = self.index
        return {"items": index.alive, "live_rows": index.live_rows, "journal_seq": index.seq,
                "compact_rows": self.compact_rows, "compactions": self.compactions[-5:]}


def changes(snapshot: LiveIndex, records: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """The ids added, updated and deleted by `records` relative to the published version (its manifest's
    changes.parquet), last change of a key winning."""
    published = set(keys_of(snapshot.items.slice(0, snapshot.base_rows)))
    last: dict[str, str] = {}
    for record in records:
        keys = keys_of(pl.DataFrame(record["rows"], schema=ROW_SCHEMA)) if record["op"] == "upsert" else record["keys"]
        for key in keys:
            last[key] = ("updated" if key in published else "added") if record["op"] == "upsert" else "deleted"
    kept = {k: v for k, v in last.items() if not (v == "deleted" and k not in published)}
    return pl.DataFrame({"channel_id": [k.split(KEY_SEPARATOR, 1)[0] or None for k in kept],
                         "id": [k.split(KEY_SEPARATOR, 1)[1] for k in kept], "change": list(kept.values())},
                        schema={"channel_id": pl.String, "id": pl.String, "change": pl.String})


def prepared(rows: pl.DataFrame, builder: TextBuilder) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Rows to write (ROW_SCHEMA, with the digest of the text each vector is embedded from, as the indexing
    job records it), the texts the encoder reads and the texts the lexical index reads."""
    parts = content_parts(rows)
    texts = builder.build(parts)
    return (as_rows(rows.with_columns(pl.Series(HASH_COLUMN, text_hashes(texts), dtype=pl.String))), texts,
            [lexical_text(p) for p in parts])


def embedder(encoder: BiEncoder, companion: BiEncoder | None) -> Callable[[pl.DataFrame],
                                                                           tuple[np.ndarray, np.ndarray | None]]:
    """Rows -> (retriever vectors, companion vectors or None): what replaying a journal written by another
    encoder embeds again."""
    def embed(rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        parts = content_parts(rows)
        return (encoder.encode(encoder.builder.build(parts)),
                companion.encode(companion.builder.build(parts)) if companion is not None else None)
    return embed


def served_rows(index: ContentIndex, content: pl.DataFrame) -> pl.DataFrame:
    """The ROW_SCHEMA rows of a published index: its own (a compacted version holds them) or, for one built
    from catalog files, the catalog's content (row i = index row i) with the index's text digests."""
    if SEQ_COLUMN in index.items.columns:
        return as_rows(index.items)
    digests = index.items[HASH_COLUMN] if HASH_COLUMN in index.items.columns else None
    return as_rows(content.with_columns(digests) if digests is not None else content)
