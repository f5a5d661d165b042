"""Acceptance test of the live catalog's durability, on the real `edurank serve` process: an upsert answered
200 is on disk, so a SIGKILL right after it (with requests still in flight and a background compaction
likely running, EDURANK_COMPACT_ROWS being tiny) loses nothing; the restarted server serves every
acknowledged item, and every index version published meanwhile verifies against its manifest. A journal
whose tail was damaged while the server was down is repaired on start, keeping what was acknowledged.

Each server start loads the bundled encoder over the 7-item test catalog (seconds, not minutes)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from edurank.artifacts import LATEST, MANIFEST, Manifest
from edurank.retriever.content_index import ContentIndex
from edurank.retriever.live import JOURNAL_FILE, Journal
from tests.conftest import CONTENT, edurank_server, kill_mid_stream, tail, write_catalog

# titles far from each other and from the catalog's: each is its own item's best match by meaning alone
DISTINCT = ["Volcanic eruptions and magma chambers", "Baroque counterpoint in Bach's fugues",
            "Medieval siege engines and trebuchets", "Honeybee waggle dance communication",
            "Tidal forces of the moon on the oceans", "Knitting patterns for wool scarves",
            "Jet engine turbine blade cooling", "Grammar of Latin verb conjugations",
            "Sourdough bread fermentation with yeast", "Glacier retreat in the Alps"]


@dataclass
class Workspace:
    catalog: Path
    artifacts: Path
    log: Path

    @property
    def index_root(self) -> Path:
        return self.artifacts / "index"

    @property
    def journal(self) -> Path:
        return self.artifacts / "index-live" / JOURNAL_FILE


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(write_catalog(tmp_path / "catalog"), tmp_path / "artifacts", tmp_path / "server.log")


def server(space: Workspace) -> AbstractContextManager[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """`edurank serve` over the workspace, models loaded before it answers (so /ready means ready)."""
    return edurank_server({"EDURANK_ARTIFACTS": str(space.artifacts), "EDURANK_CATALOG": str(space.catalog),
                           "EDURANK_BACKGROUND_LOAD": "false", "EDURANK_TRAIN_RANKER": "false",
                           "EDURANK_COMPACT_ROWS": "7"}, space.log)


def new_item(number: int) -> dict[str, Any]:
    """A new item in a channel of its own (so a channel-restricted /recommend names it alone); every tenth
    item gets one of the DISTINCT titles, the rest a worksheet title of their own."""
    title = DISTINCT[number // 10] if number % 10 == 0 and number // 10 < len(DISTINCT) else \
        f"Practice worksheet number {number}"
    return {"id": f"live{number}", "channel_id": f"channel{number}", "channel_version": 1, "title": title,
            "description": None, "text": None, "language": "en", "kind": "document"}


@dataclass
class Sent:
    """What the writers sent: the items of requests answered 200, and those of requests with no answer."""

    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    unanswered: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def write(base_url: str, numbers: list[list[int]], sent: Sent, stop: threading.Event) -> None:
    """POST /catalog/items, one request per list of item numbers, until done or the server dies."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for batch in numbers:
            if stop.is_set():
                return
            items = [new_item(n) for n in batch]
            try:
                answer = client.post("/catalog/items", json={"items": items})
            except httpx.TransportError:  # killed while this one was in flight: it may or may not be there
                with sent.lock:
                    sent.unanswered.update((item["id"], item) for item in items)
                return
            assert answer.status_code == 200, answer.text
            assert answer.json()["written"] == [f"{item['channel_id']}/{item['id']}" for item in items]
            with sent.lock:
                sent.acknowledged.update((item["id"], item) for item in items)
                sent.requests += 1


def recommended(client: httpx.Client, title: str, channels: list[str] | None = None) -> list[str]:
    body: dict[str, Any] = {"topic": {"title": title}, "rerank": False, "top_k": 1}
    if channels:
        body["channels"] = channels
    answer = client.post("/recommend", json=body)
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


def check_served(client: httpx.Client, acknowledged: dict[str, dict[str, Any]], at_most: int) -> None:
    """Every acknowledged item is served (alone in its channel, and first for a DISTINCT title); the
    catalog holds the test catalog plus them, and at most `at_most` items."""
    state = client.get("/catalog/").json()
    assert len(CONTENT) + len(acknowledged) <= state["items"] <= len(CONTENT) + at_most, state
    for item_id, item in acknowledged.items():
        assert recommended(client, item["title"], [item["channel_id"]]) == [item_id]
    distinct = [item_id for item_id, item in acknowledged.items() if item["title"] in DISTINCT]
    assert distinct, "no item with a distinct title was acknowledged"
    for item_id in distinct:
        assert recommended(client, acknowledged[item_id]["title"]) == [item_id]


def check_versions(index_root: Path) -> list[Path]:
    """Every published index version verifies against its manifest, and the LATEST one loads."""
    versions = sorted(p for p in index_root.iterdir() if (p / MANIFEST).is_file() and not p.name.startswith("."))
    assert versions
    for version in versions:
        Manifest.verified(version)
    latest = index_root / (index_root / LATEST).read_text().strip()
    loaded = ContentIndex.load(latest)
    assert loaded.index.ntotal == len(loaded.items) and loaded.lexical is not None
    return versions


def test_a_sigkill_right_after_acknowledged_upserts_loses_none(workspace: Workspace) -> None:
    """Three writers send 1- and 5-item upserts; the server is SIGKILLed the moment 30 are acknowledged,
    with others in flight. After a restart, every acknowledged item is served, nothing else appeared, and
    the index versions (compactions ran: EDURANK_COMPACT_ROWS=7) verify."""
    plan = [[n] if request % 2 == 0 else list(range(n, n + 5)) for request, n in
            enumerate(range(0, 12 * 3 * 6, 6))]  # 36 requests, item numbers apart: 1 or 5 items each
    sent, stop = Sent(), threading.Event()
    with server(workspace) as (process, client):
        writers = [threading.Thread(target=write, args=(str(client.base_url), plan[i::3], sent, stop))
                   for i in range(3)]
        kill_mid_stream(process, writers, stop, lambda: sent.requests >= 30, 60, workspace.log)
    acknowledged = dict(sent.acknowledged)
    assert sent.requests >= 30 and len(acknowledged) >= 30 + 4 * 12  # at least 12 of them 5-item requests

    with server(workspace) as (_, client):
        check_served(client, acknowledged, len(acknowledged) + len(sent.unanswered))
    versions = check_versions(workspace.index_root)
    assert len(versions) >= 2, "no compaction was published (EDURANK_COMPACT_ROWS=7)"
    assert "Traceback" not in tail(workspace.log, 10**7)


def test_a_damaged_journal_tail_is_dropped_on_restart(workspace: Workspace) -> None:
    """Half a line appended to the journal while the server is down (a crash mid-write) is cut off on start;
    what was acknowledged before is served, and the next write follows the last good line."""
    acknowledged: dict[str, dict[str, Any]] = {}
    with server(workspace) as (process, client):
        for number in (0, 1, 2):  # 3 live rows: under EDURANK_COMPACT_ROWS, all in the journal
            item = new_item(number)
            assert client.post("/catalog/items", json={"items": [item]}).status_code == 200
            acknowledged[item["id"]] = item
        os.kill(process.pid, signal.SIGKILL)
    whole = workspace.journal.read_bytes()
    assert whole.count(b"\n") == 3
    workspace.journal.write_bytes(whole + whole.splitlines(keepends=True)[-1][:57])

    with server(workspace) as (process, client):
        assert workspace.journal.read_bytes() == whole  # truncated back to the last good line
        check_served(client, acknowledged, len(acknowledged))
        item = new_item(10)
        assert client.post("/catalog/items", json={"items": [item]}).status_code == 200
        os.kill(process.pid, signal.SIGKILL)
    records = Journal(workspace.journal.parent).records  # the next write follows the last good line
    assert [r["rows"][0]["id"] for r in records] == ["live0", "live1", "live2", "live10"]
    assert workspace.journal.read_bytes().startswith(whole)
    check_versions(workspace.index_root)
