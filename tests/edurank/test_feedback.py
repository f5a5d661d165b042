"""The feedback store, the same suite on SQLite and on PostgreSQL (`feedback_url`; PostgreSQL is Debian's, started
for the session, and skipped where it is not installed): what reads return after decisions and undos, the labels
they make, schema migrations, concurrent writers, the export and reading it back."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from edurank.cli.main import main
from edurank.feedback import (
    INTERACTIONS,
    Decision,
    FeedbackStore,
    InvalidDecision,
    StoreError,
    export_feedback,
    read_labels,
)
from edurank.feedback.decisions import MAX_TEXT_BYTES
from edurank.feedback.store import VERSION_TABLE, database_url, decisions, failures, make_engine, migrate


@pytest.fixture
def store(feedback_url: str) -> FeedbackStore:
    with FeedbackStore.open(feedback_url) as opened:
        yield opened


def labels_of(store: FeedbackStore) -> dict[tuple[str, str], bool]:
    return {(t, c): label for t, c, label in store.labels().iter_rows()}


def test_the_latest_decision_is_current_and_undo_brings_back_the_one_before(store: FeedbackStore) -> None:
    before = datetime.now(UTC)
    first, other = store.record([Decision("t1", "c1", "accepted", who="ana", rank=1, probability=0.9,
                                          versions={"ranker": "v1", "reranker": None}, channel_id="ch"),
                                 Decision("t2", "c1", "imported", source="api")])
    [second] = store.record([Decision("t1", "c1", "rejected", who="ben", source="review")])
    assert other == first + 1 and second > other
    current = store.current()
    assert [d.id for d in current] == [second, other]  # newest first, one per (topic, item)
    assert current[0].decision == "rejected" and current[0].who == "ben" and current[0].source == "review"
    assert [d.id for d in store.current("t1")] == [second]

    assert store.undo(second, who="ana") is True
    assert store.undo(second) is False and store.undo(10**9) is False  # already undone; unknown
    [restored] = store.current("t1")
    assert restored.id == first and restored.decision == "accepted" and restored.rank == 1
    assert restored.probability == pytest.approx(0.9) and restored.channel_id == "ch"
    assert restored.versions == {"ranker": "v1", "reranker": None} and restored.undone_at is None
    assert before - timedelta(seconds=1) <= restored.at <= datetime.now(UTC) and restored.at.tzinfo is not None

    history = store.history()
    assert [d.id for d in history] == [second, other, first]  # undone ones included
    assert history[0].undone_by == "ana" and history[0].undone_at is not None and history[0].undone_at.tzinfo
    assert [d.id for d in store.history("t1", limit=1)] == [second]
    with pytest.raises(ValueError, match="limit"):
        store.history(limit=0)


def test_labels_come_from_verdicts_alone(store: FeedbackStore) -> None:
    """accepted and imported label True, rejected False; flagged, previewed and ignored never label. A preview
    or an ignore after a verdict leaves it standing; a flag after it takes the label away."""
    store.record([Decision("t", "accepted", "accepted"), Decision("t", "imported", "imported"),
                  Decision("t", "rejected", "rejected"), Decision("t", "flagged", "flagged"),
                  Decision("t", "previewed", "previewed"), Decision("t", "ignored", "ignored"),
                  Decision("t", "seen-after", "accepted"), Decision("t", "flag-after", "imported")])
    store.record([Decision("t", "seen-after", "previewed"), Decision("t", "seen-after", "ignored"),
                  Decision("t", "flag-after", "flagged")])
    assert labels_of(store) == {("t", "accepted"): True, ("t", "imported"): True, ("t", "rejected"): False,
                                ("t", "seen-after"): True}
    assert store.labels().schema == pl.Schema({"topic_id": pl.String, "content_id": pl.String,
                                               "label": pl.Boolean})


def test_current_is_the_latest_verdict_not_a_later_preview_or_ignore(store: FeedbackStore) -> None:
    """What was only seen after a verdict hides it neither from the labels nor from `current` (the review page's
    badge and undo target, the export's decisions.csv); a pair only seen shows its latest sighting."""
    [accepted] = store.record([Decision("t", "seen-after", "accepted")])
    store.record([Decision("t", "seen", "previewed"), Decision("t", "flag-after", "imported")])
    [ignored, _, flagged] = store.record([Decision("t", "seen-after", "ignored"), Decision("t", "seen", "ignored"),
                                          Decision("t", "flag-after", "flagged")])
    current = {d.content_id: (d.id, d.decision) for d in store.current()}
    assert current == {"seen-after": (accepted, "accepted"), "seen": (ignored + 1, "ignored"),
                       "flag-after": (flagged, "flagged")}
    assert [d.id for d in store.current()] == [flagged, ignored + 1, accepted]  # newest first
    assert [d.id for d in store.history(limit=1000)][0] == flagged and len(store.history()) == 6  # all kept
    assert store.undo(accepted)  # the verdict undone: its pair's latest sighting is current
    assert {d.content_id: d.id for d in store.current("t")}["seen-after"] == ignored
    assert [d.id for d in store.current(limit=1)] == [flagged]
    with pytest.raises(ValueError, match="limit"):
        store.current(limit=0)


def test_an_empty_store_has_empty_frames(store: FeedbackStore) -> None:
    assert store.current() == [] and store.history() == [] and store.record([]) == []
    assert store.labels().is_empty() and store.labels().columns == ["topic_id", "content_id", "label"]


@pytest.mark.parametrize(("values", "field"), [
    ({"decision": "liked"}, "decision"),
    ({"topic_id": ""}, "topic_id"),
    ({"content_id": "a\x00b"}, "content_id"),
    ({"who": "\ud800"}, "who"),
    ({"rank": 0}, "rank"),
    ({"rank": True}, "rank"),
    ({"probability": 1.5}, "probability"),
    ({"probability": float("nan")}, "probability"),
    ({"source": "email"}, "source"),
    ({"versions": {"ranker": 3}}, "versions.ranker"),
    ({"content_id": "c 1"}, "content_id"),  # ids hold no whitespace: the export writes them space-separated
    ({"topic_id": " t"}, "topic_id"),
    ({"channel_id": "ch\t"}, "channel_id"),
    ({"content_id": "\u00e9" * (MAX_TEXT_BYTES // 2 + 1)}, "content_id"),  # under 512 characters, over 512 bytes
    ({"who": "w" * (MAX_TEXT_BYTES + 1)}, "who"),
])
def test_a_bad_value_is_refused_naming_its_field(values: dict, field: str) -> None:
    with pytest.raises(InvalidDecision) as caught:
        Decision(**{"topic_id": "t", "content_id": "c", "decision": "accepted", **values})
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")
    assert isinstance(caught.value, ValueError) and caught.value.loc == tuple(field.split("."))


def test_a_fields_loc_keeps_a_version_key_whole() -> None:
    assert InvalidDecision("versions.ranker.v2", "bad").loc == ("versions", "ranker.v2")
    assert Decision("t", "c", "accepted", who="Ana María", versions={"ranker.v2": None}).who == "Ana María"


def test_values_the_database_refuses_are_refused_errors_without_the_drivers_text(store: FeedbackStore) -> None:
    """An integrity or data error is the caller's (`refused`); its public text names no host or user."""
    bad = Decision("t", "c", "accepted")
    object.__setattr__(bad, "topic_id", None)  # past validation: the database's NOT NULL refuses it
    with pytest.raises(StoreError) as caught:
        store.record([bad])
    assert caught.value.refused and caught.value.public == "the database refused the values given"
    assert "recording decisions failed" in str(caught.value) and store.history() == []
    with pytest.raises(StoreError) as caught, failures("reading decisions", "db"):
        raise sa.exc.OperationalError("SELECT", {}, Exception('connection to "db.internal" port 5432 user "ed"'))
    assert not caught.value.refused and caught.value.public == "reading decisions failed"
    assert "db.internal" in str(caught.value) and "db.internal" not in caught.value.public


def test_every_interaction_is_kept(store: FeedbackStore) -> None:
    ids = store.record([Decision("t", f"c{i}", kind) for i, kind in enumerate(INTERACTIONS)])
    assert sorted(d.decision for d in store.history()) == sorted(INTERACTIONS) and len(set(ids)) == len(ids)


def test_concurrent_writers_lose_nothing(store: FeedbackStore) -> None:
    """8 threads, 25 two-decision transactions each, on one shared store: every id is distinct and stored."""
    acknowledged: list[int] = []
    lock = threading.Lock()

    def write(writer: int) -> None:
        for n in range(25):
            ids = store.record([Decision(f"t{writer}", f"c{n}", "accepted"), Decision(f"t{writer}", f"x{n}",
                                                                                      "rejected")])
            with lock:
                acknowledged.extend(ids)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(acknowledged) == len(set(acknowledged)) == 8 * 25 * 2
    assert sorted(d.id for d in store.history(limit=1000)) == sorted(acknowledged)
    assert len(store.labels()) == 400 and store.labels()["label"].sum() == 200


def test_migrations_are_idempotent_and_match_the_table(feedback_url: str) -> None:
    for _ in range(2):
        with FeedbackStore.open(feedback_url) as opened:
            opened.record([Decision("t", "c", "accepted")])
    with FeedbackStore.open(feedback_url) as opened:
        assert len(opened.history()) == 2
        inspector = sa.inspect(opened.engine)
        columns = {column["name"] for column in inspector.get_columns("decisions")}
        assert columns == set(decisions.c.keys())
        assert any(index["column_names"] == ["topic_id", "content_id"] for index in inspector.get_indexes("decisions"))
        with opened.engine.connect() as connection:
            assert connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == ["0002"]


def test_a_database_at_an_older_schema_is_upgraded(feedback_url: str) -> None:
    """A database left at revision 0001 (before undo existed) is migrated on open, its rows kept."""
    engine = make_engine(database_url(feedback_url))
    migrate(engine, "0001")
    with engine.begin() as connection:
        assert "undone_at" not in {c["name"] for c in sa.inspect(connection).get_columns("decisions")}
        connection.execute(sa.text("INSERT INTO decisions (topic_id, content_id, decision, at, versions, source) "
                                   "VALUES ('t', 'c', 'accepted', :at, '{}', 'review')"),
                           {"at": datetime(2024, 5, 1, tzinfo=UTC)})
    engine.dispose()
    with FeedbackStore.open(feedback_url) as opened:
        [old] = opened.current()
        assert old.decision == "accepted" and old.at == datetime(2024, 5, 1, tzinfo=UTC)
        assert opened.undo(old.id, who="ana") and opened.current() == []


def test_a_database_from_a_newer_edurank_is_refused(feedback_url: str) -> None:
    with FeedbackStore.open(feedback_url) as opened, opened.engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(StoreError, match="migrating the schema failed: .*9999"):
        FeedbackStore.open(feedback_url)


def test_labels_round_trip_through_the_export_with_any_id_that_is_kept(store: FeedbackStore, feedback_url: str,
                                                                         tmp_path: Path) -> None:
    """Ids with commas, quotes, slashes and non-ASCII letters come back from the CSV files as they went in."""
    ids = ["c,1", 'c"2', "ü/3", "c'4", "x" * 200, "a;b"]
    store.record([Decision("t,1", ids[0], "accepted"), Decision("t,1", ids[1], "imported"),
                  Decision('t"2', ids[2], "rejected"), Decision('t"2', ids[3], "accepted"),
                  Decision("t/3", ids[4], "accepted"), Decision("t/3", ids[5], "rejected"),
                  Decision("t/3", ids[0], "flagged"), Decision("t/3", ids[1], "previewed")])
    export_feedback(store, tmp_path / "out")
    expected = store.labels()
    assert len(expected) == 6 and read_labels(tmp_path / "out").equals(expected)
    assert read_labels(feedback_url).equals(expected)


def test_a_reader_never_migrates_nor_waits_for_a_writer(feedback_url: str) -> None:
    """read_labels (and the export) open a database without writing: an older schema is refused with the
    revisions named, and left as it was."""
    engine = make_engine(database_url(feedback_url))
    migrate(engine, "0001")
    with pytest.raises(StoreError, match="revision 0001, older than this edurank's 0002; a reader does not migrate"):
        read_labels(feedback_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == ["0001"]
        assert "undone_at" not in {c["name"] for c in sa.inspect(connection).get_columns("decisions")}
    engine.dispose()
    with FeedbackStore.open(feedback_url) as opened:  # a writer migrates it
        opened.record([Decision("t", "c", "accepted")])
        with opened.engine.begin() as connection:
            connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(StoreError, match="revision 9999 is newer than this edurank's 0002"):
        read_labels(feedback_url)


def test_a_reader_reads_while_a_writer_holds_the_sqlite_lock(tmp_path: Path) -> None:
    target = tmp_path / "feedback.sqlite"
    with FeedbackStore.open(target) as opened:
        opened.record([Decision("t", "c", "accepted")])
    writer = sqlite3.connect(target, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # what a migration would wait for (BUSY_SECONDS), then fail on
        started = datetime.now(UTC)
        assert read_labels(target)["label"].to_list() == [True]
        assert datetime.now(UTC) - started < timedelta(seconds=5)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_export_and_read_labels_round_trip(store: FeedbackStore, feedback_url: str, tmp_path: Path) -> None:
    store.record([Decision("t1", "c2", "accepted", who="ana", versions={"ranker": "v1"}),
                  Decision("t1", "c1", "imported"), Decision("t1", "c3", "rejected"),
                  Decision("t2", "c1", "accepted"), Decision("t2", "c9", "previewed"),
                  Decision("t3", "c4", "rejected")])
    [undone] = store.record([Decision("t3", "c4", "accepted")])
    store.undo(undone)
    counts = export_feedback(store, tmp_path / "out")
    assert counts == {"topics": 2, "accepted": 3, "rejected": 2, "decisions": 6}
    assert (tmp_path / "out" / "correlations.csv").read_text() == "topic_id,content_ids\nt1,c1 c2\nt2,c1\n"
    assert (tmp_path / "out" / "rejected.csv").read_text() == "topic_id,content_id\nt1,c3\nt3,c4\n"
    audit = pl.read_csv(tmp_path / "out" / "decisions.csv")
    assert len(audit) == 6 and audit.filter(pl.col("who") == "ana")["versions"].to_list() == ['{"ranker": "v1"}']
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left
    expected = store.labels()
    assert read_labels(tmp_path / "out").equals(expected)
    assert read_labels(feedback_url).equals(expected)
    assert read_labels(str(tmp_path / "out")).equals(expected)


def test_sqlite_is_one_wal_file_fsynced_on_commit(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "feedback.sqlite"  # the folders are created
    with FeedbackStore.open(f"sqlite:///{target}") as opened:
        opened.record([Decision("t", "c", "accepted")])
        with opened.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    with sqlite3.connect(target) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # stored in the file itself
        assert plain.execute("SELECT count(*) FROM decisions").fetchone() == (1,)


def test_what_cannot_be_opened_says_why(tmp_path: Path) -> None:
    (tmp_path / "text.sqlite").write_text("not a database, " * 100)
    with pytest.raises(StoreError, match="connecting failed: file is not a database"):
        FeedbackStore.open(tmp_path / "text.sqlite")
    with pytest.raises(StoreError, match="no such file"):
        read_labels(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    with pytest.raises(StoreError, match="only SQLite .* and PostgreSQL") as caught:
        FeedbackStore.open("mysql://user:secret@localhost/db")
    assert "secret" not in str(caught.value)
    with pytest.raises(StoreError, match="in-memory"):
        FeedbackStore.open("sqlite://")


def test_an_unreachable_postgresql_is_a_store_error_without_its_password() -> None:
    from tests.conftest import free_port

    with pytest.raises(StoreError, match="connecting failed: .*refused") as caught:
        FeedbackStore.open(f"postgres://edurank:s3cret@127.0.0.1:{free_port()}/feedback")
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_the_cli_exports_and_refuses_a_missing_database(store: FeedbackStore, feedback_url: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    store.record([Decision("t1", "c1", "accepted"), Decision("t1", "c2", "rejected")])
    assert main(["feedback", "export", "--db", feedback_url, "--out", str(tmp_path / "out")]) == 0
    assert "1 accepted items over 1 topics, 1 rejected pairs" in capsys.readouterr().out
    assert read_labels(tmp_path / "out").equals(store.labels())
    assert main(["feedback", "export", "--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("edurank: error: feedback database ") and "no such file" in error
    assert error.count("\n") == 1 and not (tmp_path / "x").exists()
