"""The image, built and run for real with podman: `scripts/image/build.sh` (what `make image` runs) builds the
Dockerfile in Docker's format, on a Debian base made with mmdebstrap where no registry can be reached; then
the container serves models trained here on the host (every kind the service loads, trained by the project's
own quick paths), answers every route of its OpenAPI document, and passes its own HEALTHCHECK; the README's
`docker run` line works as written (a normal user's ids for `$(id -u):$(id -g)`: tests run as root) on that
user's folder; and compose's order (the index job, then the API
on the volume it wrote) serves. podman-compose 1.0.3 ignores `service_completed_successfully`, so the two
services run by hand from compose.yaml's own commands and environment.

Skips where podman is missing, or where no base can be had (no $BASE given, and mmdebstrap missing or not
root); `.ci/run` installs podman and mmdebstrap from Debian. The first build takes minutes (pip downloads the
dependencies); later ones reuse podman's layer cache and the base made once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edurank import SAMPLE_CATALOG
from edurank.essays.config import WindowSpec
from edurank.retriever.catalog import load_catalog
from edurank.retriever.index_job import build_index
from edurank.retriever.model import BiEncoder
from edurank.training.classifier import train_classifier
from edurank.training.config import ClassifierConfig, EssayConfig, RankerConfig, RerankerConfig, RetrieverConfig
from edurank.training.essays import train_essays
from edurank.training.ranker import train_ranker
from edurank.training.reranker import train_reranker
from edurank.training.retriever import train_retriever
from tests.conftest import essay_rows, free_port, report_figures, response_rows, write_essays, write_responses

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "edurank:latest"  # the name the README's `docker run ... edurank` and compose.yaml use
KEY = "image-test-key-0123456789abcdef"
KINDS = ("retriever", "index", "ranker", "reranker", "essays", "classifier")
USER = (4242, 4242)  # a normal user's uid and gid on the host, for the README's `--user "$(id -u):$(id -g)"`
TOPIC, CONTENT = "t_en_003", "c_en_0065"  # linked in the bundled sample catalog, which the image serves
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "scripts" / "image" / "containers.conf")}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, check=check, timeout=timeout)


def no_image_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs it: apt-get install podman runc)"
    if not os.environ.get("BASE") and (shutil.which("mmdebstrap") is None or os.geteuid() != 0):
        return "no base image: set BASE to a Python 3.11 image, or run as root with mmdebstrap installed"
    return None


@pytest.fixture(scope="module")
def building() -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """`scripts/image/build.sh` started in the background: the build mostly waits on pip's downloads, so the
    host's training (`trained`) runs meanwhile."""
    reason = no_image_reason()
    if reason:
        pytest.skip(reason)
    process = subprocess.Popen(["bash", str(ROOT / "scripts" / "image" / "build.sh"), IMAGE], env=ENV)
    yield process, time.monotonic()
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def trained(building: tuple[subprocess.Popen[bytes], float], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every kind the service serves, trained and published here on the host by the same calls as the unit
    tests' (quick settings): a retriever and the index it embeds, a LightGBM ranker, a cross-encoder, an essay
    scorer and a misconception classifier."""
    work = tmp_path_factory.mktemp("host")
    root = work / "artifacts"
    catalog = load_catalog(SAMPLE_CATALOG)
    retriever = train_retriever(catalog, root / "retriever", RetrieverConfig(
        rounds=0, epochs=1, batch_size=16, max_tokens=32, freeze_layers=5))
    build_index(BiEncoder.load(retriever), catalog, root / "index")
    train_ranker(catalog, ["bundled"], root / "ranker", RankerConfig(folds=2, trees=50))
    train_reranker(catalog, ["bundled"], root / "reranker", RerankerConfig(
        folds=2, hard_negatives=2, negatives=1, epochs=1, topic_tokens=16, content_tokens=24, freeze_layers=5,
        cross_fit=False))
    train_essays(write_essays(work / "essays.csv", essay_rows(30)), root / "essays",
                 EssayConfig(paths=("fast",), folds=2, windows=WindowSpec(max_tokens=32, stride=24)))
    train_classifier(write_responses(work / "responses.csv", response_rows(40)), root / "classifier",
                     ClassifierConfig(folds=2, max_length=48, freeze_layers=5, epochs=1, batch_size=8))
    return root


@pytest.fixture(scope="module")
def image(building: tuple[subprocess.Popen[bytes], float], trained: Path) -> str:
    """The built image (waited for after the training, which ran beside the build)."""
    process, started = building
    assert process.wait(timeout=1800) == 0, "scripts/image/build.sh failed (its output is above)"
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    report_figures("image", {"build_and_train_s": round(time.monotonic() - started), "size_mb": size // 10**6})
    return IMAGE


def copy_of(trained: Path, destination: Path) -> Path:
    """A copy of the trained artifacts as the host user keeps them (owner and modes as published)."""
    shutil.copytree(trained, destination, symlinks=True)
    return destination


@contextlib.contextmanager
def container(run_args: list[str]) -> Iterator[str]:
    """`podman run -d` with `run_args`, yielding its name; removed (and its log printed) on the way out."""
    name = f"edurank-test-{uuid.uuid4().hex[:10]}"
    podman("run", "-d", "--name", name, *run_args)
    try:
        yield name
    finally:
        print(podman("logs", "--tail", "40", name, check=False).stderr[-4000:])
        podman("rm", "--force", "--time", "5", name, check=False)


def wait_healthy(name: str, seconds: float = 300) -> None:
    """Until the image's own HEALTHCHECK passes (podman runs it on request: no systemd timers here)."""
    deadline = time.monotonic() + seconds
    while podman("healthcheck", "run", name, check=False, timeout=30).returncode != 0:
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["Running"], f"the container exited ({state['ExitCode']}):\n{logs(name)}"
        assert time.monotonic() < deadline, f"the HEALTHCHECK never passed:\n{logs(name)}"
        time.sleep(2)
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert (state.get("Health") or state.get("Healthcheck"))["Status"] == "healthy"


def logs(name: str) -> str:
    result = podman("logs", "--tail", "60", name, check=False)
    return (result.stdout + result.stderr)[-6000:]


def calls(client: httpx.Client) -> dict[tuple[str, str], Callable[[], httpx.Response]]:
    """One valid, minimal request per route of the OpenAPI document, keyed by (method, path template); in
    order, as a route that needs an id takes it from an earlier answer."""
    uid = lambda: str(uuid.uuid4())  # noqa: E731 - Studio's ids are UUIDs
    channel = uid()
    ids: dict[str, Any] = {}

    def post(path: str, body: Any = None, **kwargs: Any) -> Callable[[], httpx.Response]:
        return lambda: client.post(path.format(**ids), json=body, **kwargs)

    def get(path: str, **params: str) -> Callable[[], httpx.Response]:
        return lambda: client.get(path.format(**ids), params=params)

    def remember(key: str, field: Callable[[Any], Any],
                 call: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
        def remembered() -> httpx.Response:
            response = call()
            if response.status_code < 300:
                ids[key] = field(response.json())
            return response
        return remembered

    text = "Adding fractions with unlike denominators"
    return {
        ("GET", "/health"): get("/health"),
        ("GET", "/ready"): get("/ready"),
        ("GET", "/metrics"): get("/metrics"),
        ("POST", "/recommend"): post("/recommend", {"topic_id": TOPIC, "explain": True}),
        ("POST", "/rerank"): post("/rerank", {"query": text, "candidates": ["Half of one third", "Cells"]}),
        ("POST", "/tei/rerank"): post("/tei/rerank", {"query": text, "texts": ["Half of one third", "Cells"]}),
        ("POST", "/v1/rerank"): post("/v1/rerank", {"query": text, "documents": ["Half of one third", "Cells"]}),
        ("POST", "/v2/rerank"): post("/v2/rerank", {"query": text, "documents": ["Half of one third", "Cells"]}),
        ("GET", "/connect"): get("/connect"),
        ("POST", "/embed-content"): post("/embed-content", {"resources": [{
            "id": uid(), "channel_id": channel, "title": "Fractions", "description": "Adding unlike fractions",
            "content_id": uid(), "channel_version": 1}]}),
        ("POST", "/embed-topics"): post("/embed-topics", {"topics": [{
            "id": uid(), "channel_id": channel, "title": "Fractions", "description": "Adding", "language": "en"}]}),
        ("POST", "/catalog/items"): post("/catalog/items", {"items": [
            {"id": "image-test", "title": text, "language": "en"}]}),
        ("POST", "/catalog/items/delete"): post("/catalog/items/delete", {"items": [{"id": "image-test"}]}),
        ("GET", "/catalog/"): get("/catalog/"),
        ("POST", "/v1/embeddings"): post("/v1/embeddings", {"input": text}),
        ("POST", "/embed"): post("/embed", {"inputs": text}),
        ("POST", "/tei/embed"): post("/tei/embed", {"inputs": text}),
        ("POST", "/tei"): post("/tei", {"inputs": text}),
        ("POST", "/score-essay"): post("/score-essay", {"text": "Students who study at home can plan their day."}),
        ("POST", "/classify"): post("/classify", {"question_id": "1", "answer": "5",
                                                  "explanation": "you add one more at the end"}),
        ("GET", "/v1/models"): remember("model", lambda body: body["data"][0]["id"], get("/v1/models")),
        ("GET", "/v1/models/{model}"): get("/v1/models/{model}"),
        ("GET", "/info"): get("/info"),
        ("GET", "/tei/info"): get("/tei/info"),
        ("POST", "/review/decisions"): remember("review", lambda body: body["ids"][0], post(
            "/review/decisions", {"topic_id": TOPIC, "content_id": CONTENT, "decision": "accepted", "rank": 1})),
        ("GET", "/review/decisions"): get("/review/decisions", topic_id=TOPIC),
        ("POST", "/review/decisions/{decision_id}/undo"): post("/review/decisions/{review}/undo"),
        ("POST", "/feedback"): remember("feedback", lambda body: body["ids"][0], post("/feedback", {"decisions": [
            {"topic_id": TOPIC, "content_id": CONTENT, "decision": "accepted"}]})),
        ("GET", "/feedback"): get("/feedback", topic_id=TOPIC),
        ("GET", "/feedback/current"): get("/feedback/current", topic_id=TOPIC),
        ("POST", "/feedback/{decision_id}/undo"): post("/feedback/{feedback}/undo"),
        ("POST", "/admin/reload"): post("/admin/reload"),
    }


def test_every_route_answers_in_the_container_over_models_trained_on_the_host(
        image: str, trained: Path, tmp_path: Path) -> None:
    """As the image's own user (uid 10001), which owns none of the published files: they are readable because
    publishing makes them so; the folder is given to that user, as the README says for running without --user."""
    artifacts = copy_of(trained, tmp_path / "artifacts")
    os.chown(artifacts, 10001, 10001)
    port = free_port()
    with container(["-p", f"127.0.0.1:{port}:8000", "-v", f"{artifacts}:/artifacts",
                    "-e", f"EDURANK_API_KEY={KEY}", image]) as name:
        wait_healthy(name)
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as client:
            served = client.get("/ready").json()["registry"]["versions"]
            published = {kind: (artifacts / kind / "LATEST").read_text().strip() for kind in KINDS}
            assert {kind: served.get(kind) for kind in KINDS} == published  # each kind: the version trained here
            spec = client.get("/openapi.json").json()
            routes = {(method.upper(), path) for path, methods in spec["paths"].items() for method in methods}
            requests = calls(client)
            assert routes == set(requests), f"routes without a request here: {routes - set(requests)}"
            answers = {route: call() for route, call in requests.items()}
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    assert "/ready" in " ".join(inspected["Healthcheck"]["Test"])  # podman's own OCI format would drop it
    failed = {f"{m} {p}": (r.status_code, r.text[:300]) for (m, p), r in answers.items() if r.status_code >= 300}
    assert not failed, failed


def readme_line(prefix: str) -> str:
    """The README's command line that starts with `prefix` (in its Docker section's code block)."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()]
    return next(line for line in lines if line.startswith(prefix))


def test_the_readmes_docker_run_line_serves_a_users_folder(image: str, trained: Path, tmp_path: Path) -> None:
    """`docker run -p 8000:8000 --user ... -v "$PWD/artifacts:/artifacts" edurank` run by the shell as written
    but for one substitution: tests run as root, for whom `$(id -u):$(id -g)` would prove nothing, so a normal
    user's ids (USER, 4242:4242, neither root's nor the image's 10001) stand in for it, and the artifacts folder
    is that user's, as a host user's own training leaves it. podman stands in for docker; the test adds only -d,
    a name and a free host port. It writes there (the feedback store) and reads what was trained there."""
    line = readme_line('docker run -p 8000:8000 --user')
    assert '--user "$(id -u):$(id -g)"' in line
    line = line.replace('"$(id -u):$(id -g)"', ":".join(map(str, USER)))
    for path in [copy_of(trained, tmp_path / "artifacts"), *(tmp_path / "artifacts").rglob("*")]:
        os.chown(path, *USER, follow_symlinks=False)
    argv = subprocess.run(["bash", "-c", f"argv() {{ printf '%s\\0' \"$@\"; }}; argv {line}"], cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert argv[:2] == ["docker", "run"] and argv[-1] == "edurank", argv
    port = free_port()
    run_args = [f"127.0.0.1:{port}:8000" if arg == "8000:8000" else arg for arg in argv[2:]]
    with container(run_args) as name:
        wait_healthy(name)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            assert client.post("/recommend", json={"topic_id": TOPIC}).json()["items"]
            recorded = client.post("/feedback", json={"decisions": [
                {"topic_id": TOPIC, "content_id": CONTENT, "decision": "accepted"}]})
            assert recorded.status_code < 300, recorded.text
    assert (tmp_path / "artifacts" / "feedback.sqlite").stat().st_uid == USER[0]


def interpolate(value: str) -> str:
    """compose's `${NAME:-default}` and `${NAME}`, as compose reads them with none of the names set."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: m.group(2) or "", value)


def test_compose_runs_the_index_job_then_the_api_on_its_volume(image: str, tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    index, api = compose["services"]["index"], compose["services"]["api"]
    assert api["depends_on"]["index"]["condition"] == "service_completed_successfully"
    volume = f"edurank-test-{uuid.uuid4().hex[:10]}"
    (tmp_path / "catalog").mkdir()

    def run_args(service: dict[str, Any]) -> list[str]:
        args = []
        for mount in service["volumes"]:
            source, target = interpolate(mount).split(":", 1)
            source = volume if source == "artifacts" else str((tmp_path / source).resolve())
            args += ["-v", f"{source}:{target}"]
        for name, value in service["environment"].items():
            args += ["-e", f"{name}={interpolate(str(value))}"]
        return args

    podman("volume", "create", volume)
    try:
        job = podman("run", "--rm", *run_args(index), image, *[interpolate(part) for part in index["command"]],
                     check=False, timeout=600)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        port = free_port()
        assert "command" not in api and api["ports"] == ["127.0.0.1:${PORT:-8000}:8000"]
        with container(["-p", f"127.0.0.1:{port}:8000", *run_args(api), image]) as name:
            wait_healthy(name)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                versions = client.get("/ready").json()["registry"]["versions"]
                assert versions["index"] == podman("run", "--rm", "-v", f"{volume}:/artifacts", "--entrypoint", "cat",
                                                   image, "/artifacts/index/LATEST").stdout.strip()
                assert client.post("/recommend", json={"topic_id": TOPIC}).json()["items"]
    finally:
        podman("volume", "rm", "--force", volume, check=False)


def test_the_dockerfile_takes_its_base_and_torch_as_arguments_and_runs_as_a_user() -> None:
    """What needs no engine: the base and the torch index are build arguments (CPU torch by default, as PyPI's
    torch 2.13.0 is a CUDA build), the service runs as a user, and its HEALTHCHECK asks for readiness where the
    service listens. RUN --mount needs BuildKit: the syntax line asks for it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# syntax=docker/dockerfile:1\n")
    assert "EDURANK_HOST" in dockerfile[dockerfile.index("HEALTHCHECK"):]
    assert re.search(r"^ARG BASE=python:3\.11-slim\nFROM \$\{BASE\}$", dockerfile, re.M)
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cpu$", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "/ready" in dockerfile[dockerfile.index("HEALTHCHECK"):]
