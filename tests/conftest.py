"""Tiny hand-written catalogs in the LECR layout, written per test so each can break one thing."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from edurank import SAMPLE_CATALOG
from edurank.retriever.catalog import CONTENT_COLUMNS, TOPIC_COLUMNS

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def topic(id: str, title: str, parent: str | None = None, language: str = "en", **extra: Any) -> dict[str, Any]:
    row = {c: None for c in TOPIC_COLUMNS}
    row.update(id=id, title=title, parent=parent, language=language, channel="ch", category="supplemental")
    row.update(extra)
    return row


def item(id: str, title: str, text: str | None = None, language: str = "en", kind: str = "document",
         **extra: Any) -> dict[str, Any]:
    row = {c: None for c in CONTENT_COLUMNS}
    row.update(id=id, title=title, text=text, language=language, kind=kind)
    row.update(extra)
    return row


TOPICS = [
    topic("root", "Mathematics", level=0),
    topic("fr", "Fractions", "root", level=1),
    topic("fr_add", "Adding fractions", "fr", description="Add fractions with unlike denominators.", level=2),
    topic("fr_mul", "Multiplying fractions", "fr", level=2),
    topic("geo", "Geometry", "root", level=1),
    topic("geo_area", "Area of a triangle", "geo", level=2),
    topic("es_root", "Biología", None, language="es", level=0),
    topic("es_cell", "La célula", "es_root", language="es", level=1),
]
CONTENT = [
    item("c1", "Adding fractions", "To add \\( \\frac{1}{2} + \\frac{1}{3} \\), find a common denominator:\n"
         "6. Then \\( \\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6} \\).", kind="exercise"),
    item("c2", "Common denominators", "The least common multiple of the denominators, as in 4 and 6 -> 12."),
    item("c3", "Multiplying fractions", "Multiply numerators, multiply denominators: \\( \\frac{2}{3} "
         "\\times \\frac{3}{4} = \\frac{1}{2} \\)."),
    item("c4", "Triangle area", "The area of a triangle is half of base times height.", kind="video"),
    item("c5", "Area of a right triangle", "Half of the product of the two legs."),
    item("c6", "La membrana celular", "La membrana rodea la célula y controla lo que entra y sale.",
         language="es"),
    item("c7", "Photosynthesis", "Plants turn light, water and carbon dioxide into sugar.", kind="video"),
]
CORRELATIONS = [
    {"topic_id": "fr_add", "content_ids": "c1 c2"},
    {"topic_id": "fr_mul", "content_ids": "c3"},
    {"topic_id": "geo_area", "content_ids": "c4 c5"},
    {"topic_id": "es_cell", "content_ids": "c6"},
]


def write_catalog(directory: Path, topics: list[dict[str, Any]] | None = None,
                  content: list[dict[str, Any]] | None = None,
                  correlations: list[dict[str, Any]] | None = None, suffix: str = ".csv") -> Path:
    """Write topics/content/correlations (defaults: the tiny catalog above) and return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("topics", topics or TOPICS), ("content", content or CONTENT),
                       ("correlations", correlations or CORRELATIONS)):
        frame = pl.DataFrame(rows, infer_schema_length=None)
        if suffix == ".csv":
            frame.write_csv(directory / f"{name}.csv")
        else:
            frame.write_parquet(directory / f"{name}.parquet")
    return directory


@pytest.fixture
def tiny_catalog(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "catalog")


@pytest.fixture(scope="session")
def sample_catalog() -> Path:
    return SAMPLE_CATALOG


@pytest.fixture(scope="session")
def bundled_encoder():
    from edurank.retriever.model import BiEncoder

    return BiEncoder.load(None, max_tokens=64)


@contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, for the tests that drive a real client over HTTP; yields
    its base URL and stops the server afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log)"


@contextmanager
def edurank_server(env: dict[str, str], log: Path, ready: str = "/ready",
                   start_seconds: float = 120) -> Iterator[tuple[subprocess.Popen[bytes], Any]]:
    """`python -m edurank.cli serve` as its own process on a free loopback port, `env` over this one's, its output
    appended to `log`; yields (process, an httpx client on it) once `ready` answers 200, and SIGKILLs it (if still
    running) on the way out. For the tests that kill the real server."""
    import httpx

    port = free_port()
    env = {**os.environ, "EDURANK_PORT": str(port), "EDURANK_HOST": "127.0.0.1", "EDURANK_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    with open(log, "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "edurank.cli", "serve"], env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + start_seconds
            while True:
                assert process.poll() is None, f"the server exited ({process.returncode}):\n{tail(log)}"
                assert time.monotonic() < deadline, f"the server was not ready in time:\n{tail(log)}"
                try:
                    if client.get(ready, timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            yield process, client
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(30)


def kill_mid_stream(process: subprocess.Popen[bytes], writers: list[threading.Thread], stop: threading.Event,
                    enough: Callable[[], bool], seconds: float, log: Path) -> None:
    """Start `writers`, SIGKILL the server once `enough()` holds (or every writer ended), then stop and join them:
    a kill with requests in flight, for the durability tests."""
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + seconds
    while not enough() and any(w.is_alive() for w in writers):
        assert time.monotonic() < deadline, f"the writes took too long:\n{tail(log)}"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    stop.set()
    process.wait(30)
    for writer in writers:
        writer.join(60)
    assert process.returncode == -signal.SIGKILL


def report_figures(label: str, figures: object) -> None:
    """Print an integration test's held-out figures on one line (`pytest -s`), so a change can show it kept them."""
    print(f"\nFIGURES {label} {json.dumps(figures, sort_keys=True, default=str)}")


def shared_dataset(name: str) -> Path:
    """Path to ../shared/data/<name>, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent: integration data lives outside the repository")
    return path


# -- essays --------------------------------------------------------------------------------------------------

CAREFUL = ["Students who study at home can plan their own schedule, which helps them focus.",
           "However, working with classmates teaches cooperation and patience.",
           "In conclusion, a balance between online and classroom learning is the wisest choice."]
CARELESS = ["i think school is good becuase u learn alot of stuff", "they dont want to go,they stay home",
            "its more better when teacher explain good"]
TRAIT_NAMES = ("cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions")


def essay_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Synthetic essays whose six scores rise with the share of careful sentences, so a model can learn."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(count):
        quality = rng.randint(0, 8)  # 0..8 -> scores 1.0..5.0 in half points
        sentences = [rng.choice(CAREFUL if rng.random() < quality / 8 else CARELESS) for _ in range(6)]
        score = 1.0 + quality / 2
        rows.append({"text_id": f"E{i:04d}", "full_text": " ".join(sentences),
                     **{trait: min(5.0, max(1.0, score + rng.choice((-0.5, 0.0, 0.0, 0.5)))) for trait in TRAIT_NAMES}})
    return rows


def write_essays(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_csv(path)
    return path


# -- student responses ---------------------------------------------------------------------------------------

RESPONSE_PATTERNS = {  # question -> (text, answer, explanations by label)
    "1": ("What is 2+2?", {
        "4": {"True_Correct:NA": "two and two make four", "True_Neither:NA": "i just guessed it"},
        "5": {"False_Misconception:Adding_extra": "you add one more at the end", "False_Neither:NA": "not sure"}}),
    "2": ("What is half of 10?", {
        "5": {"True_Correct:NA": "ten split in two equal parts", "True_Neither:NA": "my friend said so"},
        "20": {"False_Misconception:Double": "half means times two", "False_Neither:NA": "no idea really"}}),
}


def response_rows(count: int, seed: int = 0, noise: float = 0.0) -> list[dict[str, Any]]:
    """Synthetic MAP-style responses whose label follows from the answer and a key phrase of the
    explanation, so a classifier can learn it; `noise` is the share of labels swapped for another one."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(count):
        question = rng.choice(sorted(RESPONSE_PATTERNS))
        text, answers = RESPONSE_PATTERNS[question]
        answer = rng.choice(sorted(answers))
        label, explanation = rng.choice(sorted(answers[answer].items()))
        if rng.random() < noise:
            label = rng.choice([other for other in answers[answer] if other != label])
        category, misconception = label.split(":")
        rows.append({"row_id": i, "QuestionId": question, "QuestionText": text, "MC_Answer": answer,
                     "StudentExplanation": f"{explanation} {rng.choice(['', 'ok', 'so', 'yes'])}".strip(),
                     "Category": category, "Misconception": "" if misconception == "NA" else misconception})
    return rows


def write_responses(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows).write_csv(path)
    return path


# -- databases -----------------------------------------------------------------------------------------------

POSTGRES_BINARIES = Path("/usr/lib/postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server (Debian's binaries, the newest installed) on a free loopback port, trusting
    local connections; yields its URL without a database, and stops and removes it after the session."""
    found = sorted(POSTGRES_BINARIES.glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if
                   p.parts[-3].isdigit() else 0)
    if not found:
        pytest.skip("Debian's postgresql is not installed (apt-get install postgresql)")
    binaries, as_owner = found[-1].parent, []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: its own user runs it
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and no `postgres` user to run PostgreSQL as")
        as_owner = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="edurank-pg-"))  # not under pytest's tmp dir, which only root may enter
    if as_owner:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()

    def run(*command: object) -> None:
        done = subprocess.run([*as_owner, *map(str, command)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}{done.stderr}{tail(root / 'server.log')}"

    try:
        run(binaries / "initdb", "-D", data, "-U", "edurank", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
            "--no-sync")
        run(binaries / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "-o",
            f"-k {root} -p {port} -c listen_addresses=127.0.0.1", "start")
        try:
            yield f"postgresql://edurank@127.0.0.1:{port}"
        finally:
            run(binaries / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")  # thrown away: no checkpoint
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def feedback_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty feedback database: a SQLite file path, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "feedback.sqlite")
    import psycopg

    server, name = request.getfixturevalue("postgres"), f"feedback_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"
