"""The load generator the service benchmarks share: a started service's readiness, N concurrent clients
over a list of request bodies, and the service's own per-stage and batching figures from /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


async def load(url: str, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """`clients` workers POST every body to `url`, each taking the next; per-call latency of the 200s, the
    other answers counted by status."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            try:
                response = await client.post(url, json=body)
                status = str(response.status_code)
            except httpx.HTTPError as err:
                status = type(err).__name__
            if status == "200":
                latencies.append(time.perf_counter() - started)
            else:
                errors[status] = errors.get(status, 0) + 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - started}


async def load_mixed(url: str, routes: dict[str, list[dict[str, Any]]], clients: int, seconds: float,
                     max_requests: int) -> dict[str, dict[str, Any]]:
    """`clients` workers cycling over the routes (each taking the route's next body, round robin) until
    `seconds` pass or `max_requests` are sent; per route the latencies of its 200s and its other answers."""
    results: dict[str, dict[str, Any]] = {route: {"latencies": [], "errors": {}} for route in routes}
    cursors = dict.fromkeys(routes, 0)
    order = list(routes)
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient, first: int) -> None:
        nonlocal sent
        turn = first
        while time.perf_counter() < deadline and sent < max_requests:
            route = order[turn % len(order)]
            turn += 1
            body = routes[route][cursors[route] % len(routes[route])]
            cursors[route] += 1
            sent += 1
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}{route}", json=body)
                status = str(response.status_code)
            except httpx.HTTPError as err:
                status = type(err).__name__
            if status == "200":
                results[route]["latencies"].append(time.perf_counter() - started)
            else:
                results[route]["errors"][status] = results[route]["errors"].get(status, 0) + 1

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        await asyncio.gather(*(worker(client, i) for i in range(clients)))
    return results


def rss_mib(pid: int) -> float:
    """The process's resident memory now (Linux: VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def histogram_means(metrics_text: str, name: str, label: str) -> dict[str, float]:
    """Mean of a Prometheus histogram per value of its label."""
    sums = dict(re.findall(rf'{name}_sum\{{{label}="([\w-]+)"\}} ([\d.e+-]+)', metrics_text))
    counts = dict(re.findall(rf'{name}_count\{{{label}="([\w-]+)"\}} ([\d.e+-]+)', metrics_text))
    return {key: float(sums[key]) / max(float(counts[key]), 1) for key in sums}


def stage_means(metrics_text: str) -> dict[str, float]:
    """Mean seconds per pipeline stage from the service's Prometheus histograms."""
    return histogram_means(metrics_text, "edurank_stage_seconds", "stage")


@contextlib.contextmanager
def service(env: dict[str, str], port: int, log_path: Path,
            timeout: float = 600) -> Iterator[tuple[str, dict[str, Any]]]:
    """`edurank serve` in its own process with `env` (EDURANK_* settings), as users start it; yields its URL and
    its /ready answer, and stops it after the block (its log in `log_path`)."""
    with socket.socket() as probe:  # a service left on the port would answer in this one's place
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is in use; give another")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "edurank.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, wait_ready(url, server, log_path, timeout)
    finally:
        server.terminate()
        server.wait(timeout=30)


def stage_means_between(before: str, after: str) -> dict[str, float]:
    """Mean seconds per call of each pipeline stage between two /metrics readings."""
    def read(text: str, part: str) -> dict[str, float]:
        return {k: float(v) for k, v in re.findall(
            rf'edurank_stage_seconds_{part}\{{stage="([\w-]+)"\}} ([\d.e+-]+)', text)}

    sums, counts = (read(after, part) for part in ("sum", "count"))
    sums_before, counts_before = (read(before, part) for part in ("sum", "count"))
    return {stage: (sums[stage] - sums_before.get(stage, 0.0)) / calls for stage in sums
            if (calls := counts[stage] - counts_before.get(stage, 0.0)) > 0}


def wait_ready(url: str, server: subprocess.Popen[bytes], log_path: Path, timeout: float = 600) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited; see {log_path}")
        try:
            response = httpx.get(f"{url}/ready", timeout=5)
            if response.status_code == 200:
                return response.json()
            if response.json().get("detail") not in (None, "loading"):
                raise SystemExit(f"the service failed to load: {response.json()['detail']}")
        except (httpx.HTTPError, ValueError):  # not up yet, or (Ray Serve's proxy) up before the app: not JSON
            pass
        time.sleep(2)
    raise SystemExit("the service was not ready in time")


def batch_mean(before: str, after: str, model: str) -> float:
    """Mean items per forward pass of a batched model between two /metrics readings."""
    def totals(text: str) -> tuple[float, float]:
        mean = histogram_means(text, "edurank_batch_size", "model").get(model, 0.0)
        count = sum(float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith(f'edurank_batch_size_count{{model="{model}"}}'))
        return mean * count, count

    (sum_a, count_a), (sum_b, count_b) = totals(before), totals(after)
    return (sum_b - sum_a) / max(count_b - count_a, 1)


def stage_deltas(before: str, after: str) -> dict[str, float]:
    """Seconds spent per pipeline stage between two /metrics readings (all calls added up)."""
    def sums(text: str) -> dict[str, float]:
        return {k: float(v) for k, v in re.findall(r'edurank_stage_seconds_sum\{stage="([\w-]+)"\} ([\d.e+-]+)', text)}

    first, second = sums(before), sums(after)
    return {stage: second[stage] - first.get(stage, 0.0) for stage in second if second[stage] > first.get(stage, 0.0)}


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (Linux: VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
