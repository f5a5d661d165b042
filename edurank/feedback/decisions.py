"""What a feedback decision is: a reviewer's or a platform's verdict on one recommended item for one topic, with
what was shown (rank, probability) and which model versions showed it, so it can become a training label."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

# the review page's three, then Kolibri Studio's interaction types (imported, rejected, previewed, ignored, flagged)
INTERACTIONS = ("accepted", "rejected", "flagged", "imported", "previewed", "ignored")
POSITIVE = frozenset({"accepted", "imported"})
NEGATIVE = frozenset({"rejected"})
# what someone only saw: recorded, but it neither labels a pair nor hides the verdict given before it
PASSIVE = frozenset({"previewed", "ignored"})
VERDICTS = tuple(kind for kind in INTERACTIONS if kind not in PASSIVE)
SOURCES = ("api", "review")
# longest text kept, in UTF-8 bytes: two ids stay well inside PostgreSQL's btree row limit (~2,700 bytes)
MAX_TEXT_BYTES = 512


class InvalidDecision(ValueError):
    """A decision's field holds a value the store refuses; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

    @property
    def loc(self) -> tuple[str, ...]:
        """The field as a request's `loc` path: `versions.ranker` is ("versions", "ranker"), whatever the key
        holds after its first dot."""
        return tuple(self.field.split(".", 1))


def check_text(name: str, value: object, optional: bool = False, identifier: bool = False) -> None:
    """A non-empty str that any database stores as given: valid UTF-8 (no lone surrogate), no NUL, at most
    MAX_TEXT_BYTES bytes. An `identifier` holds no whitespace at all: the export writes a topic's items
    space-separated (LECR correlations), and LECR ids never hold any."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise InvalidDecision(name, f"must be a non-empty string, got {value!r:.60}")
    if "\x00" in value:
        raise InvalidDecision(name, "must not hold a NUL character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidDecision(name, "is not valid Unicode: it holds a lone surrogate") from None
    if size > MAX_TEXT_BYTES:
        raise InvalidDecision(name, f"is {size} bytes in UTF-8; at most {MAX_TEXT_BYTES}")
    if identifier and any(c.isspace() for c in value):
        raise InvalidDecision(name, f"must not hold whitespace (an id), got {value!r:.60}")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Decision:
    """One decision as recorded; checked on construction (InvalidDecision names the field)."""

    topic_id: str
    content_id: str
    decision: str  # one of INTERACTIONS
    who: str | None = None
    rank: int | None = None  # the item's shown rank (1-based)
    probability: float | None = None  # the probability shown
    versions: dict[str, str | None] = field(default_factory=dict)  # model versions that produced the list
    source: str = "api"  # "review" (the page) or "api" (POST /feedback)
    channel_id: str | None = None

    def __post_init__(self) -> None:
        check_text("topic_id", self.topic_id, identifier=True)
        check_text("content_id", self.content_id, identifier=True)
        check_text("channel_id", self.channel_id, optional=True, identifier=True)
        check_text("who", self.who, optional=True)
        if self.decision not in INTERACTIONS:
            raise InvalidDecision("decision", f"{self.decision!r:.40} is not one of {', '.join(INTERACTIONS)}")
        if self.source not in SOURCES:
            raise InvalidDecision("source", f"{self.source!r:.40} is not one of {', '.join(SOURCES)}")
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, int)
                                      or not 1 <= self.rank < 2**31):
            raise InvalidDecision("rank", f"must be a whole number from 1, got {self.rank!r:.40}")
        if self.probability is not None and (isinstance(self.probability, bool)
                                             or not isinstance(self.probability, int | float)
                                             or not math.isfinite(self.probability)
                                             or not 0.0 <= self.probability <= 1.0):
            raise InvalidDecision("probability", f"must be a number in [0, 1], got {self.probability!r:.40}")
        if not isinstance(self.versions, dict):
            raise InvalidDecision("versions", "must map model kinds to versions")
        for kind, version in self.versions.items():
            check_text("versions", kind)
            check_text(f"versions.{kind}", version, optional=True)


@dataclass(frozen=True)
class StoredDecision(Decision):
    """A decision as the store returns it: its id, when it was recorded (UTC) and, once undone, when and by whom."""

    id: int = 0
    at: datetime = field(default_factory=utc_now)
    undone_at: datetime | None = None
    undone_by: str | None = None
