"""The live catalog through the path platforms call, end to end over HTTP against `edurank serve`:

1. upserts per second: one item per request, and 100 per request (POST /catalog/items; Studio's
   /embed-content runs the same writer), each acknowledged only once fsynced;
2. /recommend (Studio's body) p50/p99 at 4 clients, alone and while a fifth client upserts 20-item batches
   (Studio's batch size), in one run;
3. growth through the same route to `--grow` items, 100 per request, with every compaction's seconds (the
   service's GET /catalog/ lists them).

    .venv/bin/python bench/live_catalog.py --out /tmp/live-bench [--grow 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import load, wait_ready  # noqa: E402

WORDS = ("fractions volcano photosynthesis grammar verbs algebra triangle energy climate history maps reading "
         "atoms cells music rhythm poetry division decimals gravity planets ecosystems weather rivers trade "
         "democracy probability vectors chemistry bonds").split()


def items(start: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Synthetic items: a unique title and a two-sentence description drawn from a school vocabulary."""
    return [{"id": f"live-{i}", "channel_id": "bench", "channel_version": 1, "language": "en",
             "title": f"{' '.join(rng.sample(WORDS, 4)).capitalize()} {i}",
             "description": f"A lesson on {' and '.join(rng.sample(WORDS, 3))}. Practise {rng.choice(WORDS)} "
                            f"with worked examples."} for i in range(start, start + count)]


def topics(count: int, rng: random.Random) -> list[dict[str, Any]]:
    return [{"topics": [{"id": str(uuid.uuid4()), "channel_id": str(uuid.uuid4()), "language": "en",
                         "title": " ".join(rng.sample(WORDS, 3)), "description": f"Intro to {rng.choice(WORDS)}"}]}
            for _ in range(count)]


def upsert_rate(url: str, per_request: int, requests: int, start: int, rng: random.Random) -> dict[str, float]:
    latencies = []
    with httpx.Client(timeout=120) as client:
        began = time.perf_counter()
        for r in range(requests):
            body = {"items": items(start + r * per_request, per_request, rng)}
            t = time.perf_counter()
            client.post(f"{url}/catalog/items", json=body).raise_for_status()
            latencies.append(time.perf_counter() - t)
        seconds = time.perf_counter() - began
    return {"items_per_second": round(per_request * requests / seconds, 1),
            "requests_per_second": round(requests / seconds, 2),
            "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1)}


def recommend_latency(url: str, bodies: list[dict[str, Any]], upserting: bool, start: int,
                      rng: random.Random) -> dict[str, Any]:
    stop, written = threading.Event(), [0]

    def writer() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                batch = {"items": items(start + written[0], 20, rng)}
                client.post(f"{url}/catalog/items", json=batch).raise_for_status()
                written[0] += 20

    thread = threading.Thread(target=writer, daemon=True)
    if upserting:
        thread.start()
    result = asyncio.run(load(f"{url}/recommend", bodies, clients=4))
    stop.set()
    if upserting:
        thread.join()
    latencies = np.array(result["latencies"]) * 1000
    return {"p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1), "requests": len(latencies),
            "errors": result["errors"], "items_upserted_meanwhile": written[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="artifacts directory of the service (fresh)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--recommends", type=int, default=200, help="/recommend calls per latency run")
    parser.add_argument("--grow", type=int, default=100_000, help="items to grow the catalog to (0: skip)")
    parser.add_argument("--compact-rows", type=int, default=5000)
    args = parser.parse_args()
    rng = random.Random(0)
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "EDURANK_ARTIFACTS": str(args.out), "EDURANK_PORT": str(args.port),
           "EDURANK_COMPACT_ROWS": str(args.compact_rows), "HF_HUB_OFFLINE": "1"}
    log_path = args.out.with_suffix(".log")
    args.out.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "edurank.cli", "serve"], env=env, stdout=log, stderr=log)
    figures: dict[str, Any] = {}
    try:
        ready = wait_ready(url, server, log_path)
        figures["catalog_items_at_start"] = ready["registry"]["catalog_items"]
        figures["upsert_1_per_request"] = upsert_rate(url, 1, 100, 0, rng)
        figures["upsert_100_per_request"] = upsert_rate(url, 100, 10, 1000, rng)
        bodies = topics(args.recommends, rng)
        figures["recommend_4_clients"] = recommend_latency(url, bodies, False, 0, rng)
        figures["recommend_4_clients_while_upserting"] = recommend_latency(url, bodies, True, 10_000, rng)
        print(json.dumps(figures, indent=2), flush=True)
        if args.grow:
            have = httpx.get(f"{url}/catalog/", timeout=30).json()["items"]
            began, start = time.perf_counter(), 100_000
            with httpx.Client(timeout=300) as client:
                while have < args.grow:
                    count = min(100, args.grow - have)
                    client.post(f"{url}/catalog/items", json={"items": items(start, count, rng)}).raise_for_status()
                    start, have = start + count, have + count
                    if have % 5000 < 100:
                        print(f"grown to {have} items in {time.perf_counter() - began:.0f} s", flush=True)
            time.sleep(2)
            state = httpx.get(f"{url}/catalog/", timeout=30).json()
            figures["growth"] = {"items": state["items"], "seconds": round(time.perf_counter() - began, 1),
                                 "items_per_second": round((state["items"] - figures["catalog_items_at_start"])
                                                           / (time.perf_counter() - began), 1),
                                 "compactions": state["compactions"], "live_rows": state["live_rows"]}
            figures["recommend_4_clients_after_growth"] = recommend_latency(url, bodies, False, 0, rng)
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
