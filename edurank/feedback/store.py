"""The feedback store: every decision in a real database, SQLite by default (one WAL file, fsynced on each
commit) or PostgreSQL when given a URL, through one SQLAlchemy Core code path. The schema is migrated with
Alembic when the store opens (migrations/versions/), under a lock, so several processes may open it at once.

Rows are never deleted: an undo marks its decision undone, and reads take per (topic_id, content_id) the latest
decision not undone (a verdict before a later preview or ignore), so undoing one brings back the one before it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from edurank.errors import InputError
from edurank.feedback.decisions import NEGATIVE, POSITIVE, VERDICTS, Decision, StoredDecision, utc_now

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "edurank_feedback_version"
MIGRATION_LOCK = int.from_bytes(b"edurank", "big")  # PostgreSQL advisory lock key of this store's migrations
BUSY_SECONDS = 30  # how long a SQLite writer waits for another's lock before it fails
CONNECT_SECONDS = 3  # how long a PostgreSQL connection may take: a down database answers soon, not after 10+ s
WRITE = "edurank_write"  # execution option: a SQLite transaction that writes takes the write lock at BEGIN
LABELS_SCHEMA = {"topic_id": pl.String, "content_id": pl.String, "label": pl.Boolean}
# Alembic logs each open at INFO (its plugins, the dialect, every revision run): noise in the service's log
logging.getLogger("alembic").setLevel(logging.WARNING)

metadata = sa.MetaData()
# the head of migrations/versions/ (tests/edurank/test_feedback.py checks that the two agree)
decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("topic_id", sa.String, nullable=False),
    sa.Column("content_id", sa.String, nullable=False),
    sa.Column("channel_id", sa.String),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("who", sa.String),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rank", sa.Integer),
    sa.Column("probability", sa.Float),
    sa.Column("versions", sa.JSON, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("undone_at", sa.DateTime(timezone=True)),
    sa.Column("undone_by", sa.String),
)
VERDICT_ID = sa.case((decisions.c.decision.in_(VERDICTS), decisions.c.id))  # a verdict's id, else null


class StoreError(InputError):
    """The feedback database cannot be opened or used: unreachable, not a database, a schema newer than this
    edurank's. The message names the database (a URL without its password) and the driver's reason; `public`
    (what a service may tell its clients: `problem`, or what failed where the driver gave the reason) names
    neither, as a driver's message may name the server's host, port and user. `refused`: the database refused
    the values given (an integrity or data error), the caller's fault rather than the database's."""

    def __init__(self, where: str, problem: str, public: str | None = None, refused: bool = False) -> None:
        super().__init__(f"feedback database {where}: {problem}")
        self.public, self.refused = public or problem, refused


def database_url(target: str | Path) -> URL:
    """A SQLAlchemy URL for a SQLite file path, a `sqlite:///` URL or a PostgreSQL URL (`postgresql://` and
    `postgres://` get the psycopg 3 driver)."""
    text = str(target)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().absolute()))
    try:
        url = make_url(text)
    except (sa.exc.ArgumentError, ValueError) as err:  # ValueError: a port that is not a number
        raise StoreError("URL", f"not a database URL ({err})") from None
    if url.get_backend_name() in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername == "sqlite":
        if not url.database or url.database == ":memory:":
            raise StoreError(text, "an in-memory SQLite database keeps nothing; give a file")
        return url
    raise StoreError(url.render_as_string(hide_password=True), "only SQLite (a path or sqlite:///FILE) and "
                                                               "PostgreSQL (postgresql://...) are supported")


def shown(url: URL) -> str:
    return url.database if url.drivername == "sqlite" else url.render_as_string(hide_password=True)  # type: ignore[return-value]


def make_engine(url: URL) -> Engine:
    """A thread-safe pooled engine. SQLite: WAL journal, a full fsync at every commit, a busy timeout, and
    transactions SQLAlchemy begins itself (pysqlite's own would leave DDL outside them and take the write
    lock only at the first write, where a waiting writer fails instead of queueing)."""
    if url.drivername != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_SECONDS})
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_SECONDS, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def configure(connection: Any, _: Any) -> None:
        connection.isolation_level = None  # no implicit transactions: the "begin" hook below opens them
        for pragma in (f"busy_timeout = {BUSY_SECONDS * 1000}", "journal_mode = WAL", "synchronous = FULL"):
            connection.execute(f"PRAGMA {pragma}")

    @sa.event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITE) else "BEGIN")

    return engine


@contextlib.contextmanager
def failures(what: str, where: str) -> Iterator[None]:
    """Database and migration errors as StoreError, saying what failed on which database (the driver's reason in
    the message, not in its `public` text)."""
    from alembic.util import CommandError

    try:
        yield
    except (sa.exc.SQLAlchemyError, CommandError, OSError) as err:
        cause = getattr(err, "orig", None) or err  # the driver's own error, without SQLAlchemy's SQL echo
        lines = str(cause).strip().splitlines()
        reason = lines[0] if lines else type(cause).__name__
        refused = isinstance(err, sa.exc.IntegrityError | sa.exc.DataError)
        public = "the database refused the values given" if refused else f"{what} failed"
        raise StoreError(where, f"{what} failed: {reason}", public, refused) from err


def migrate(engine: Engine, revision: str = "head") -> None:
    """`alembic upgrade` (to `revision`) on one connection, in one transaction that first takes the migration lock
    (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE), so concurrent openers migrate one at a time."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    with engine.execution_options(**{WRITE: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        config.attributes.update(connection=connection, version_table=VERSION_TABLE)
        command.upgrade(config, revision)


def schema_revision(engine: Engine) -> str | None:
    """The revision the database's schema is at (None: it has none), read without writing anything."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def check_revision(engine: Engine, where: str) -> None:
    """Refuse a database whose schema is not this edurank's (older, newer or none), naming what to do."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(MIGRATIONS))
    head, found = scripts.get_current_head(), schema_revision(engine)
    if found == head:
        return
    if found is None:
        raise StoreError(where, "it holds no feedback schema (not a feedback database, or never opened to write)")
    if found in {script.revision for script in scripts.walk_revisions()}:
        raise StoreError(where, f"its schema is at revision {found}, older than this edurank's {head}; a reader "
                                "does not migrate it: open it once to write (`edurank serve` does) to migrate it")
    raise StoreError(where, f"its schema revision {found} is newer than this edurank's {head}; upgrade edurank")


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored as UTC), PostgreSQL aware ones: both as aware UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def stored(row: sa.Row[Any]) -> StoredDecision:
    values = row._asdict()
    return StoredDecision(**{**values, "at": as_utc(values["at"]), "undone_at": as_utc(values["undone_at"])})


class FeedbackStore:
    """Decisions in a database; safe to share between threads (each call takes a pooled connection)."""

    def __init__(self, engine: Engine, where: str) -> None:
        self.engine, self.where = engine, where
        self.writer = engine.execution_options(**{WRITE: True})

    @classmethod
    def open(cls, target: str | Path, create: bool = True) -> FeedbackStore:
        """Open the database at `target`. With `create` (a writer: the service), create it if need be and
        migrate its schema to this edurank's. Without (a reader: `read_labels`, the export), it must exist at
        this edurank's schema already: its revision is only read, nothing is written and no write lock is
        taken, so a read-only copy, or a database a writer holds busy, can be read; an older schema is refused
        (StoreError names the revisions) rather than migrated from a reader."""
        url = database_url(target)
        where = shown(url)
        if url.drivername == "sqlite":
            path = Path(url.database)  # type: ignore[arg-type]
            if not create and not path.is_file():
                raise StoreError(where, "no such file")
            with failures("creating its folder", where):
                path.parent.mkdir(parents=True, exist_ok=True)
        with failures("connecting", where):
            engine = make_engine(url)
        try:
            with failures("connecting", where):
                engine.connect().close()
            if create:
                with failures("migrating the schema", where):
                    migrate(engine)
            else:
                with failures("reading the schema's revision", where):
                    check_revision(engine, where)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, where)

    def record(self, items: Sequence[Decision]) -> list[int]:
        """Store `items` in one transaction, committed (and fsynced) before this returns; their ids, in order."""
        if not items:
            return []
        at = utc_now()
        rows = [{"topic_id": d.topic_id, "content_id": d.content_id, "channel_id": d.channel_id,
                 "decision": d.decision, "who": d.who, "at": at, "rank": d.rank, "probability": d.probability,
                 "versions": dict(d.versions), "source": d.source} for d in items]
        insert = decisions.insert().returning(decisions.c.id, sort_by_parameter_order=True)
        with failures("recording decisions", self.where), self.writer.begin() as connection:
            return [int(row.id) for row in connection.execute(insert, rows)]

    def undo(self, decision_id: int, who: str | None = None) -> bool:
        """Mark a decision undone; False when there is no such decision or it was undone already."""
        update = decisions.update().where(decisions.c.id == decision_id, decisions.c.undone_at.is_(None)) \
            .values(undone_at=utc_now(), undone_by=who)
        with failures("undoing a decision", self.where), self.writer.begin() as connection:
            return connection.execute(update).rowcount == 1

    def latest(self, topic_id: str | None, chosen: sa.ColumnElement[Any],
               limit: int | None = None) -> sa.Select[Any]:
        """Per (topic_id, content_id), the decision not undone whose id `chosen` (an aggregate of the pair's
        rows) gives, newest first; at most `limit`."""
        picked = sa.select(chosen).where(decisions.c.undone_at.is_(None))
        if topic_id is not None:
            picked = picked.where(decisions.c.topic_id == topic_id)
        picked = picked.group_by(decisions.c.topic_id, decisions.c.content_id)
        return sa.select(decisions).where(decisions.c.id.in_(picked)).order_by(decisions.c.id.desc()).limit(limit)

    def read(self, query: sa.Select[Any]) -> list[StoredDecision]:
        with failures("reading decisions", self.where), self.engine.connect() as connection:
            return [stored(row) for row in connection.execute(query)]

    def current(self, topic_id: str | None = None, limit: int | None = None) -> list[StoredDecision]:
        """Per (topic_id, content_id) the latest verdict not undone (a preview or an ignore after it does not hide
        it), else, for a pair with only those, the latest of them; newest first, at most `limit` (None: all)."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit: must be at least 1, got {limit}")
        return self.read(self.latest(topic_id, sa.func.coalesce(sa.func.max(VERDICT_ID), sa.func.max(decisions.c.id)),
                                     limit))

    def history(self, topic_id: str | None = None, limit: int = 100) -> list[StoredDecision]:
        """Every decision, undone ones included, newest first."""
        if limit < 1:
            raise ValueError(f"limit: must be at least 1, got {limit}")
        query = sa.select(decisions).order_by(decisions.c.id.desc()).limit(limit)
        if topic_id is not None:
            query = query.where(decisions.c.topic_id == topic_id)
        return self.read(query)

    def labels(self) -> pl.DataFrame:
        """topic_id, content_id, label: per pair the latest verdict not undone, True if POSITIVE, False if
        NEGATIVE (a flag after it means neither: no label); a preview or an ignore after it changes nothing."""
        rows = [(d.topic_id, d.content_id, d.decision in POSITIVE)
                for d in self.read(self.latest(None, sa.func.max(VERDICT_ID))) if d.decision in POSITIVE | NEGATIVE]
        return pl.DataFrame(rows, schema=LABELS_SCHEMA, orient="row").sort("topic_id", "content_id")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
