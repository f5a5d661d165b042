"""Acceptance test of the feedback store's durability, on the real `edurank serve` process and on both databases:
a POST /feedback answered 200 is committed, so a SIGKILL in the middle of a stream of them (writers still sending,
the models still loading in the background: feedback does not wait for them) loses no acknowledged decision, and
nothing appears that was not sent."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from edurank.feedback import FeedbackStore
from tests.conftest import edurank_server, kill_mid_stream, tail, write_catalog

WRITERS, KILL_AFTER = 3, 60  # concurrent clients; acknowledged requests before the kill
KINDS = ("accepted", "rejected", "imported", "previewed", "flagged", "ignored")


@dataclass
class Sent:
    """Decisions by the id the server acknowledged, as (topic_id, content_id, decision); those with no answer."""

    acknowledged: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    unanswered: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def write(base_url: str, writer: int, sent: Sent, stop: threading.Event) -> None:
    """POST /feedback with 1 to 4 decisions each, until stopped or the server dies."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for number in range(10**6):
            if stop.is_set():
                return
            batch = [(f"topic{writer}", f"item{writer}-{number}-{k}", KINDS[(number + k) % len(KINDS)])
                     for k in range(1 + number % 4)]
            body = {"who": f"writer{writer}", "decisions": [
                {"topic_id": t, "content_id": c, "decision": d, "rank": k + 1, "probability": 0.5}
                for k, (t, c, d) in enumerate(batch)]}
            try:
                answer = client.post("/feedback", json=body)
            except httpx.TransportError:  # killed while this one was in flight: it may or may not be stored
                with sent.lock:
                    sent.unanswered += len(batch)
                return
            assert answer.status_code == 200, answer.text
            ids = answer.json()["ids"]
            assert len(ids) == len(batch)
            with sent.lock:
                sent.acknowledged.update(zip(ids, batch, strict=True))
                sent.requests += 1


def test_a_sigkill_mid_stream_loses_no_acknowledged_decision(feedback_url: str, tmp_path: Path) -> None:
    env = {"EDURANK_ARTIFACTS": str(tmp_path / "artifacts"), "EDURANK_CATALOG": str(write_catalog(tmp_path / "c")),
           "EDURANK_FEEDBACK_DB": feedback_url, "EDURANK_BACKGROUND_LOAD": "true", "EDURANK_TRAIN_RANKER": "false"}
    log, sent, stop = tmp_path / "server.log", Sent(), threading.Event()
    with edurank_server(env, log, ready="/feedback?limit=1") as (process, client):
        writers = [threading.Thread(target=write, args=(str(client.base_url), w, sent, stop)) for w in range(WRITERS)]
        kill_mid_stream(process, writers, stop, lambda: sent.requests >= KILL_AFTER, 120, log)
    assert sent.requests >= KILL_AFTER

    with FeedbackStore.open(feedback_url) as store:
        stored = {d.id: (d.topic_id, d.content_id, d.decision) for d in store.history(limit=10**6)}
    lost = {i: what for i, what in sent.acknowledged.items() if stored.get(i) != what}
    assert lost == {}, f"{len(lost)} acknowledged decisions lost or changed"
    assert len(sent.acknowledged) <= len(stored) <= len(sent.acknowledged) + sent.unanswered
    assert "Traceback" not in tail(log, 10**7)
    database = "postgresql" if "://" in feedback_url else "sqlite"
    print(f"\nFEEDBACK DURABILITY {database}: {len(sent.acknowledged)} acknowledged decisions in {sent.requests} "
          f"requests, {sent.unanswered} in flight at the SIGKILL, {len(stored)} stored")
