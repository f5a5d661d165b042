"""The live catalog (retriever/live.py) on a tiny published index: random unit vectors of dimension 8, a
lexical index over a few texts, no encoder. What must hold for content changed while the service runs: a
new row is found at once (dense and lexical), a replaced or deleted row never comes back, an older
channel_version never overwrites a newer one (a delete included), the journal survives a torn or damaged
tail, a reopened catalog serves every acknowledged change, and a compaction publishes a verified version
that serves the same items as the journal did."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.artifacts import LATEST, Manifest, ModelRef, publish_artifact, staging_dir
from edurank.retriever import live as live_module
from edurank.retriever.content_index import ContentIndex, build_faiss
from edurank.retriever.index_job import CHANGES_FILE
from edurank.retriever.lexical import LexicalIndex
from edurank.retriever.live import JOURNAL_FILE, Journal, LiveCatalog, LiveIndex, served_rows
from edurank.retriever.rows import HASH_COLUMN, SEQ_COLUMN, as_rows, key_of

DIMENSION = 8
FINGERPRINT = "f" * 40
PERCENTAGES = "Percentages of a triangle area"  # a live title made of n-grams the published vocabulary holds
BASE = [("b1", "ch1", "Adding fractions with unlike denominators", "en"),
        ("b2", "ch1", "Area of a right triangle", "en"),
        ("b3", "ch2", "La membrana celular", "es"),
        ("b4", None, "Photosynthesis turns light into sugar", "en")]


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def rows(*specs: tuple[str, str | None, str, int | None]) -> pl.DataFrame:
    """ROW_SCHEMA rows from (id, channel_id, title, channel_version); English documents, digest of the title."""
    return as_rows(pl.DataFrame(
        {"id": [s[0] for s in specs], "channel_id": [s[1] for s in specs], "title": [s[2] for s in specs],
         "channel_version": [s[3] for s in specs], "language": ["en"] * len(specs),
         "kind": ["document"] * len(specs), HASH_COLUMN: [s[2][:16] for s in specs]},
        schema_overrides={"channel_id": pl.String, "channel_version": pl.Int64}))


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """A published index version (manifest, file list, LATEST) over BASE, as `edurank index` leaves one."""
    vectors = unit(np.random.default_rng(0), len(BASE))
    items = pl.DataFrame({"id": [b[0] for b in BASE], "channel_id": [b[1] for b in BASE],
                          "title": [b[2] for b in BASE], "language": [b[3] for b in BASE],
                          "kind": ["document"] * len(BASE), HASH_COLUMN: [b[2][:16] for b in BASE]},
                         schema_overrides={"channel_id": pl.String})
    lexical = LexicalIndex.build(items["title"].to_list(), items["language"].to_list())
    root = tmp_path / "index"
    with staging_dir(root, "index-test") as work:
        ContentIndex(build_faiss(vectors), items, lexical=lexical).save(work)
        return publish_artifact(work, root, "0" * 64, kind=ContentIndex.KIND,
                                base_model=ModelRef("bundled", FINGERPRINT), data={"hash": "catalog"},
                                params={"index_type": "flat"})


def open_live(version: Path, journal: Path, out: Path | None = None, compact_rows: int = 10_000) -> LiveCatalog:
    """A LiveCatalog as the registry builds one: over a version's rows, replaying `journal`."""
    base = ContentIndex.load(version, FINGERPRINT)
    return LiveCatalog(journal, LiveIndex.over(base, served_rows(base, base.items)), FINGERPRINT, out, compact_rows)


@pytest.fixture
def live(published: Path, tmp_path: Path) -> LiveCatalog:
    return open_live(published, tmp_path / "live")


def alive_ids(catalog: LiveCatalog) -> list[str]:
    index = catalog.index
    return sorted(index.items.filter(pl.Series(~index.dead))["id"].to_list())


def dense_ids(index: LiveIndex, query: np.ndarray, k: int = 50, **filters: list[str]) -> list[str]:
    _, found = index.search(query[None, :], k, **filters)
    return [index.items["id"][int(r)] for r in found[0] if r >= 0]


def lexical_ids(index: LiveIndex, text: str, k: int = 50) -> list[str]:
    """Ids of the lexical top-k among the alive rows (the vocabulary is the published rows': query with
    n-grams they share, or a live row's exact text)."""
    assert index.lexical is not None
    found = index.lexical.search(index.lexical.transform([text]), k, [index.allowed_rows()])
    return [index.items["id"][int(r)] for r in found[0][1]]


def upsert(catalog: LiveCatalog, vectors: np.ndarray, *specs: tuple[str, str | None, str, int | None]) \
        -> live_module.Outcome:
    frame = rows(*specs)
    return catalog.upsert(frame, vectors, frame["title"].to_list())


# -- (a) found at once; replaced and deleted rows masked ----------------------------------------------------


def test_an_upserted_row_is_found_dense_and_lexical(live: LiveCatalog) -> None:
    vector = unit(np.random.default_rng(1), 1)
    outcome = upsert(live, vector, ("n1", "ch1", "Quadratic equations by completing the square", 1))
    assert outcome.written == [key_of("ch1", "n1")] and outcome.seq == 1 and not outcome.stale
    index = live.index
    assert dense_ids(index, vector[0], k=1) == ["n1"]
    assert lexical_ids(index, "completing the square")[0] == "n1"
    assert index.alive == len(BASE) + 1 and index.live_rows == 1
    assert np.allclose(index.vectors_of(np.array([len(BASE)])), vector)


def test_an_update_masks_the_old_row_and_a_delete_masks_the_row(live: LiveCatalog) -> None:
    rng = np.random.default_rng(2)
    first, second = unit(rng, 1), unit(rng, 1)
    upsert(live, first, ("n1", "ch1", "Vectors in the plane", 1))
    upsert(live, second, ("n1", "ch1", "Matrices and determinants", 2))  # same key: replaces the row
    index = live.index
    assert index.items["id"].to_list().count("n1") == 2 and index.dead.sum() == 1
    assert dense_ids(index, first[0]).count("n1") == 1  # only the live copy, never the replaced one
    assert dense_ids(index, second[0], k=1) == ["n1"]
    assert "n1" not in lexical_ids(index, "vectors in the plane")[:1]
    assert lexical_ids(index, "matrices and determinants")[0] == "n1"
    replaced = index.items.with_row_index("row").filter(pl.col("id") == "n1")
    assert index.dead[replaced["row"].to_list()].tolist() == [True, False]

    # a base row updated: its published row is masked too
    upsert(live, unit(rng, 1), ("b2", "ch1", "Heron's formula", None))
    assert live.index.dead[1] and live.index.live_rows == 4  # n1 twice (one masked), b2's new row, its masked one

    outcome = live.delete([("ch1", "n1"), ("ch1", "nope")], [None, None])
    assert outcome.deleted == [key_of("ch1", "n1")] and outcome.missing == [key_of("ch1", "nope")]
    index = live.index
    assert "n1" not in dense_ids(index, second[0]) and "n1" not in lexical_ids(index, "matrices and determinants")
    assert alive_ids(live) == ["b1", "b2", "b3", "b4"]
    assert live.delete([("ch1", "n1")], [None]).missing == [key_of("ch1", "n1")]  # already gone


def test_filters_by_channel_apply_to_live_rows(live: LiveCatalog) -> None:
    rng = np.random.default_rng(3)
    upsert(live, unit(rng, 2), ("n1", "ch3", "Prime numbers", 1), ("n2", None, "Prime factorisation", 1))
    index = live.index

    def allowed(**filters: list[str]) -> list[str]:
        found = live.index.allowed_rows(**filters)
        assert found is not None
        return sorted(live.index.items["id"][found.tolist()].to_list())

    assert allowed(channels=["ch3"]) == ["n1"]
    assert allowed(channels=["ch1", "ch3"]) == ["b1", "b2", "n1"]
    assert allowed(exclude_channels=["ch1"]) == ["b3", "b4", "n1", "n2"]  # rows without a channel pass exclusion
    assert allowed(languages=["es"]) == ["b3"]
    query = index.vectors_of(np.array([len(BASE)]))[0]
    assert dense_ids(index, query, channels=["ch3"]) == ["n1"]
    assert set(dense_ids(index, query, exclude_channels=["ch3"])) == {"b1", "b2", "b3", "b4", "n2"}
    live.delete([("ch3", "n1")], [None])
    assert allowed(channels=["ch3"]) == [] and dense_ids(live.index, query, channels=["ch3"]) == []


# -- (b) channel versions ------------------------------------------------------------------------------------


def test_an_older_channel_version_is_skipped_an_equal_or_newer_one_overwrites(live: LiveCatalog) -> None:
    rng = np.random.default_rng(4)
    upsert(live, unit(rng, 1), ("n1", "ch1", "Version five", 5))
    older = upsert(live, unit(rng, 1), ("n1", "ch1", "Version four", 4))
    assert older.stale == [key_of("ch1", "n1")] and older.written == [] and older.seq is None
    assert live.index.items.filter(~pl.Series(live.index.dead))["title"].to_list()[-1] == "Version five"
    assert upsert(live, unit(rng, 1), ("n1", "ch1", "Version five again", 5)).written == [key_of("ch1", "n1")]
    assert upsert(live, unit(rng, 1), ("n1", "ch1", "Version six", 6)).written == [key_of("ch1", "n1")]
    alive = live.index.items.filter(~pl.Series(live.index.dead))
    assert alive.filter(pl.col("id") == "n1")["title"].to_list() == ["Version six"]
    # in one change, the stale key is skipped and the rest written
    mixed = upsert(live, unit(rng, 2), ("n1", "ch1", "Version three", 3), ("n2", "ch1", "Fresh", 1))
    assert mixed.stale == [key_of("ch1", "n1")] and mixed.written == [key_of("ch1", "n2")]
    # the same key twice in one change: the later row counts
    twice = upsert(live, unit(rng, 2), ("n3", "ch1", "First copy", 1), ("n3", "ch1", "Second copy", 1))
    assert twice.written == [key_of("ch1", "n3")]
    assert live.index.items.filter(~pl.Series(live.index.dead) & (pl.col("id") == "n3"))["title"].to_list() \
        == ["Second copy"]
    # a key is (channel_id, id): the same id in another channel is another item
    assert upsert(live, unit(rng, 1), ("n1", "ch2", "Other channel", 1)).written == [key_of("ch2", "n1")]


def test_a_delete_tombstone_keeps_an_older_upsert_from_resurrecting_the_item(live: LiveCatalog, published: Path,
                                                                              tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    upsert(live, unit(rng, 1), ("n1", "ch1", "Version five", 5))
    assert live.delete([("ch1", "n1")], [4]).stale == [key_of("ch1", "n1")]  # an older delete is skipped too
    assert "n1" in alive_ids(live)
    assert live.delete([("ch1", "n1")], [6]).deleted == [key_of("ch1", "n1")]
    late = upsert(live, unit(rng, 1), ("n1", "ch1", "Version five, delivered late", 5))
    assert late.stale == [key_of("ch1", "n1")] and "n1" not in alive_ids(live)
    # the tombstone is journalled: a reopened catalog still refuses the older version
    reopened = open_live(published, tmp_path / "live")
    assert upsert(reopened, unit(rng, 1), ("n1", "ch1", "Version five, once more", 5)).stale == [key_of("ch1", "n1")]
    assert "n1" not in alive_ids(reopened)
    assert upsert(reopened, unit(rng, 1), ("n1", "ch1", "Version seven", 7)).written == [key_of("ch1", "n1")]
    assert "n1" in alive_ids(reopened)


# -- (c) the journal -----------------------------------------------------------------------------------------


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_torn_last_line_is_dropped_and_truncated_and_later_appends_follow(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for seq in (1, 2, 3):
        journal.append({"seq": seq, "op": "delete", "keys": [f"k{seq}"], "versions": [None]})
    whole = journal.path.read_bytes()
    with open(journal.path, "ab") as handle:
        handle.write(b"0badc0de {\"seq\": 4, \"op\"")  # a write cut short by a crash: no newline
    reopened = Journal(tmp_path)
    assert [r["seq"] for r in reopened.records] == [1, 2, 3]
    assert journal.path.read_bytes() == whole  # cut back to the last good line
    reopened.append({"seq": 4, "op": "delete", "keys": ["k4"], "versions": [None]})
    assert [r["seq"] for r in Journal(tmp_path).records] == [1, 2, 3, 4]

    cut = journal.path.read_bytes()
    journal.path.write_bytes(cut[:-7])  # the last line cut mid-way
    assert [r["seq"] for r in Journal(tmp_path).records] == [1, 2, 3]
    assert journal.path.read_bytes() == whole


def test_a_line_failing_its_crc_stops_the_replay_there(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    for seq in (1, 2, 3):
        journal.append({"seq": seq, "op": "delete", "keys": [f"k{seq}"], "versions": [None]})
    first, second, third = lines(journal.path)
    damaged = second.replace(b'"k2"', b'"k9"')  # same length, same crc field: the body no longer matches
    assert len(damaged) == len(second) and damaged != second
    journal.path.write_bytes(first + damaged + third)
    assert [r["seq"] for r in Journal(tmp_path).records] == [1]
    assert journal.path.read_bytes() == first
    for bad in (b"zzzzzzzz {}\n", b"00000000{}\n", b"\n", b"%08x not json\n" % 0):
        journal.path.write_bytes(first + bad)
        assert [r["seq"] for r in Journal(tmp_path).records] == [1], bad


def test_an_empty_or_missing_journal_holds_no_records(tmp_path: Path) -> None:
    assert Journal(tmp_path / "fresh").records == [] and not (tmp_path / "fresh").exists()  # made on first write
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / JOURNAL_FILE).write_bytes(b"")
    assert Journal(tmp_path / "fresh").records == []


def test_a_journal_where_nothing_can_be_made_opens_and_refuses_writes(tmp_path: Path) -> None:
    """A read-only artifacts folder (simulated under a regular file: root ignores permission bits) still serves."""
    (tmp_path / "file").write_text("")
    journal = Journal(tmp_path / "file" / "live")
    assert journal.records == []
    with pytest.raises(OSError):
        journal.append({"seq": 1, "op": "delete", "keys": [], "versions": []})
    fresh = Journal(tmp_path / "new" / "live")
    fresh.append({"seq": 1, "op": "delete", "keys": [], "versions": []})
    assert [r["seq"] for r in Journal(tmp_path / "new" / "live").records] == [1]


# -- (d) reopening replays every acknowledged change ---------------------------------------------------------


def test_reopening_replays_every_acknowledged_change(live: LiveCatalog, published: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng, 3)
    upsert(live, vectors[:2], ("n1", "ch1", "Ratios", 1), ("n2", "ch2", PERCENTAGES, 1))
    upsert(live, vectors[2:], ("n1", "ch1", "Ratios and rates", 2))
    upsert(live, unit(rng, 1), ("b1", "ch1", "Fractions, rewritten", None))
    live.delete([("ch2", "b3")], [None])
    before = live.index
    reopened = open_live(published, tmp_path / "live")
    after = reopened.index
    assert alive_ids(reopened) == alive_ids(live) == ["b1", "b2", "b4", "n1", "n2"]
    assert after.seq == before.seq == 4 and reopened.next_seq == 5
    assert after.items.drop(SEQ_COLUMN).equals(before.items.drop(SEQ_COLUMN)) and (after.dead == before.dead).all()
    assert np.allclose(after.tail.rows, before.tail.rows)
    assert dense_ids(after, vectors[2], k=1) == ["n1"] and lexical_ids(after, PERCENTAGES)[0] == "n2"
    assert reopened.rows == live.rows and reopened.versions == live.versions
    assert upsert(reopened, unit(rng, 1), ("n3", "ch1", "Proportions", 1)).seq == 5


def test_a_journal_written_by_another_encoder_is_embedded_again_on_replay(live: LiveCatalog, published: Path,
                                                                          tmp_path: Path) -> None:
    upsert(live, unit(np.random.default_rng(7), 1), ("n1", "ch1", "Ratios", 1))
    replacement = unit(np.random.default_rng(8), 1)
    base = ContentIndex.load(published, FINGERPRINT)
    reopened = LiveCatalog(tmp_path / "live", LiveIndex.over(base, served_rows(base, base.items)), "other",
                           embed=lambda frame: (np.repeat(replacement, len(frame), axis=0), None))
    assert np.allclose(reopened.index.tail.rows, replacement)
    with pytest.raises(ValueError, match="another encoder"):
        LiveCatalog(tmp_path / "live", LiveIndex.over(base, served_rows(base, base.items)), "other")


# -- (e) compaction ------------------------------------------------------------------------------------------


def test_compaction_publishes_a_verified_version_and_keeps_only_later_records(
        published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change journalled while the compaction publishes stays in the journal and in the served snapshot; a
    fresh catalog over the new version and the journal serves the same items."""
    root = published.parent
    live = open_live(published, tmp_path / "live", out=root)
    rng = np.random.default_rng(9)
    upsert(live, unit(rng, 2), ("n1", "ch1", "Ratios", 1), ("n2", "ch2", PERCENTAGES, 1))
    upsert(live, unit(rng, 1), ("b1", "ch1", "Fractions, rewritten", None))
    upsert(live, unit(rng, 1), ("n3", "ch1", "Short-lived", 1))
    live.delete([("ch2", "b3"), ("ch1", "n3")], [None, None])
    folded_seq = live.index.seq

    original = live_module.publish_compacted

    def publish_during_a_write(*args: object, **kwargs: object) -> Path:
        upsert(live, unit(rng, 1), ("n4", "ch1", "Written while compacting", 1))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(live_module, "publish_compacted", publish_during_a_write)
    version = live.compact()
    assert version is not None and version != published
    assert (root / LATEST).read_text().strip() == version.name

    manifest = Manifest.verified(version)
    assert manifest.data["live_seq"] == folded_seq and manifest.data["hash"] == "catalog"
    assert manifest.details["changes"] == {"since": published.name, "added": 2, "updated": 1, "deleted": 1}
    assert manifest.details["count"] == 5 and manifest.base_model == ModelRef("bundled", FINGERPRINT)
    changes = dict(pl.read_parquet(version / CHANGES_FILE).select("id", "change").iter_rows())
    assert changes == {"n1": "added", "n2": "added", "b1": "updated", "b3": "deleted"}  # n3 came and went

    assert [r["seq"] for r in Journal(tmp_path / "live").records] == [folded_seq + 1]
    assert alive_ids(live) == ["b1", "b2", "b4", "n1", "n2", "n4"]
    assert live.index.base_rows == 5 and live.index.live_rows == 1 and live.index.seq == folded_seq + 1

    monkeypatch.undo()
    fresh = open_live(version, tmp_path / "live", out=root)
    assert alive_ids(fresh) == alive_ids(live)
    assert fresh.index.seq == folded_seq + 1 and fresh.next_seq == folded_seq + 2
    stored = ContentIndex.load(version, FINGERPRINT)
    assert stored.lexical is not None and stored.lexical.rows == stored.index.ntotal == 5
    query = live.index.vectors_of(np.array([live.rows[key_of("ch1", "b1")]]))[0]
    assert dense_ids(fresh.index, query, k=1) == ["b1"] and lexical_ids(fresh.index, PERCENTAGES)[0] == "n2"
    assert fresh.compact() is not None and Journal(tmp_path / "live").records == []
    assert fresh.compact() is None  # nothing new since: nothing published


def test_passing_compact_rows_compacts_in_the_background(published: Path, tmp_path: Path) -> None:
    root = published.parent
    live = open_live(published, tmp_path / "live", out=root, compact_rows=3)
    rng = np.random.default_rng(10)
    upsert(live, unit(rng, 2), ("n1", "ch1", "Ratios", 1), ("n2", "ch1", "Rates", 1))
    assert live.compacting is None  # two live rows: under the limit
    upsert(live, unit(rng, 1), ("n3", "ch1", "Proportions", 1))
    assert live.compacting is not None
    live.compacting.join(30)
    assert len(live.compactions) == 1 and live.index.live_rows == 0 and live.index.base_rows == 7
    version = root / live.compactions[0]["version"]
    assert Manifest.verified(version).data["live_seq"] == 2
    assert Journal(tmp_path / "live").records == []
    assert live.describe()["items"] == 7 and live.describe()["compactions"][0]["rows"] == 7
    assert alive_ids(open_live(version, tmp_path / "live")) == alive_ids(live)


def test_a_failed_compaction_leaves_the_version_and_the_journal_serving(
        published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = open_live(published, tmp_path / "live", out=published.parent)
    upsert(live, unit(np.random.default_rng(11), 1), ("n1", "ch1", "Ratios", 1))
    journal = (tmp_path / "live" / JOURNAL_FILE).read_bytes()

    def broken(*args: object, **kwargs: object) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(live_module, "publish_compacted", broken)
    assert live.compact() is None
    assert (published.parent / LATEST).read_text().strip() == published.name
    assert (tmp_path / "live" / JOURNAL_FILE).read_bytes() == journal and "n1" in alive_ids(live)


def test_the_listener_sees_rows_aligned_with_every_snapshot_across_a_compaction(
        published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's listener keeps per-row facts for rows before `first_new` and derives the rest (as
    Recommender.with_index does); after a compaction drops masked rows, every row moves, so the facts it
    keeps must be for the new rows, also when a change was journalled while the compaction published."""
    live = open_live(published, tmp_path / "live", out=published.parent)
    facts = live.index.items["id"].to_list()

    def listener(index: LiveIndex, first_new: int) -> None:
        nonlocal facts
        facts = facts[:first_new] + index.items["id"].slice(first_new).to_list()

    live.listener = listener
    rng = np.random.default_rng(12)
    upsert(live, unit(rng, 1), ("n1", "ch1", "Ratios", 1))
    live.delete([("ch1", "b1")], [None])  # row 0 masked: the compacted rows all move up one
    original = live_module.publish_compacted

    def publish_during_a_write(*args: object, **kwargs: object) -> Path:
        upsert(live, unit(rng, 1), ("n2", "ch1", "Written while compacting", 1))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(live_module, "publish_compacted", publish_during_a_write)
    assert live.compact() is not None
    assert facts == live.index.items["id"].to_list() == ["b2", "b3", "b4", "n1", "n2"]


def test_a_compaction_reading_the_journal_waits_for_an_append_in_progress(published: Path, tmp_path: Path) -> None:
    """The writer appends under the catalog's lock; a compaction that read (and repaired) the journal
    without it could take a line still being written for a torn tail and cut an acknowledged change."""
    live = open_live(published, tmp_path / "live", out=published.parent)
    rng = np.random.default_rng(13)
    upsert(live, unit(rng, 1), ("n1", "ch1", "Ratios", 1))
    frame = rows(("n2", "ch1", "Rates", 1))
    record = {"seq": 2, "op": "upsert", "model": FINGERPRINT, "rows": frame.with_columns(
        pl.lit(2, pl.Int64).alias(SEQ_COLUMN)).to_dicts(), "vectors": live_module.encode_array(unit(rng, 1)),
        "lexical": ["Rates"], "companion": None}
    body = json.dumps(record, separators=(",", ":")).encode()
    line = b"%08x %s\n" % (live_module.zlib.crc32(body), body)
    path = tmp_path / "live" / JOURNAL_FILE
    with live.lock:  # as Journal.append holds it: half the line written, the rest about to follow
        with open(path, "ab") as handle:
            handle.write(line[:40])
        compaction = threading.Thread(target=live.compact)
        compaction.start()
        time.sleep(0.3)
        with open(path, "ab") as handle:
            handle.write(line[40:])
        live.next_seq = 3
        live.apply(record)
    compaction.join(30)
    assert [r["seq"] for r in Journal(tmp_path / "live").records] == [2]  # kept: the compaction folded seq 1 only
    latest = (published.parent / LATEST).read_text().strip()
    assert alive_ids(open_live(published.parent / latest, tmp_path / "live")) == alive_ids(live)


def test_a_tombstone_outlives_a_compaction_and_a_restart(published: Path, tmp_path: Path) -> None:
    live = open_live(published, tmp_path / "live", out=published.parent)
    rng = np.random.default_rng(14)
    upsert(live, unit(rng, 1), ("n1", "ch1", "Version five", 5))
    live.delete([("ch1", "n1")], [6])
    version = live.compact()
    assert version is not None
    reopened = open_live(version, tmp_path / "live")
    assert upsert(reopened, unit(rng, 1), ("n1", "ch1", "Version five, delivered late", 5)).stale \
        == [key_of("ch1", "n1")]


def test_a_key_sent_twice_in_one_delete_is_one_delete_and_replays(published: Path, tmp_path: Path) -> None:
    """The later of two copies counts, as in an upsert; the journalled record replays on reopening."""
    live = open_live(published, tmp_path / "live")
    upsert(live, unit(np.random.default_rng(21), 1), ("n1", "ch1", "Ratios", 3))
    outcome = live.delete([("ch1", "n1"), ("ch1", "n1")], [5, 1])
    assert outcome.stale == [key_of("ch1", "n1")] and not outcome.deleted  # the later copy is older than stored
    outcome = live.delete([("ch1", "n1"), ("ch1", "n1")], [1, 5])
    assert outcome.deleted == [key_of("ch1", "n1")]
    assert "n1" not in alive_ids(open_live(published, tmp_path / "live"))


def test_an_unfiltered_search_never_returns_a_masked_row(live: LiveCatalog) -> None:
    """Without filters the published index is searched for k plus its masked rows; those are dropped."""
    first = live.index.items["id"][0]
    query = live.index.vectors_of(np.array([0]))
    live.delete([(live.index.items["channel_id"][0], first)], [None])
    _, found = live.index.search(query, 3)
    assert 0 not in found[0] and (found[0] >= 0).sum() == 3
