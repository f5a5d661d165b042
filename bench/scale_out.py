"""`/recommend` by topic id at N clients: one `edurank serve` process against `edurank serve --replicas R` (Ray
Serve, one port), on the same artifacts, each started as users start it (`EDURANK_*` settings, its own process).

    .venv/bin/python bench/scale_out.py --catalog ../shared/data/curriculum --clients 16 --requests 400

The first start builds the index and trains a first ranker into `--out` (where none is there yet); the Ray Serve
start then only loads them (its driver's `prepare` finds them current), so both serve the same versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np
from loadgen import load, service

from edurank import SAMPLE_CATALOG
from edurank.retriever.catalog import load_catalog


def measure(env: dict[str, str], port: int, log: Path, bodies: list[dict[str, object]], clients: int,
            requests: int, warmup: int) -> dict[str, object]:
    """Start the service with `env`, warm it up, then `requests` calls from `clients` clients."""
    started = time.perf_counter()
    with service(env, port, log) as (url, ready):
        start_seconds = time.perf_counter() - started
        asyncio.run(load(f"{url}/recommend", bodies[:warmup], clients))
        result = asyncio.run(load(f"{url}/recommend", (bodies * (requests // len(bodies) + 1))[:requests], clients))
    latencies = np.array(result["latencies"]) * 1000
    p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (float("nan"),) * 2
    return {"requests_per_s": round(len(latencies) / result["seconds"], 1), "p50_ms": round(float(p50)),
            "p99_ms": round(float(p99)), "errors": result["errors"], "ready_seconds": round(start_seconds, 1),
            "versions": ready["registry"]["versions"], "ranker": ready["registry"]["ranker"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=SAMPLE_CATALOG)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400, help="measured requests per setup")
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--port", type=int, default=8785)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/scale"))
    args = parser.parse_args()

    catalog = load_catalog(args.catalog)
    topics = catalog.correlations["topic_id"].unique(maintain_order=True).to_list()
    bodies: list[dict[str, object]] = [{"topic_id": topic} for topic in topics]
    env = {**os.environ, "EDURANK_CATALOG": str(args.catalog), "EDURANK_ARTIFACTS": str(args.out),
           "HF_HUB_OFFLINE": "1"}
    env.pop("EDURANK_REPLICAS", None)
    results = {"one process": measure(env, args.port, args.out / "one.log", bodies, args.clients, args.requests,
                                      args.warmup)}
    results[f"{args.replicas} replicas"] = measure({**env, "EDURANK_REPLICAS": str(args.replicas)}, args.port,
                                                   args.out / "replicas.log", bodies, args.clients, args.requests,
                                                   args.warmup)
    print(f"{len(catalog.content)} items, {len(topics)} topics; /recommend by id, {args.clients} clients, "
          f"{args.requests} requests; {os.cpu_count()} cores")
    for name, result in results.items():
        print(f"{name:>12}: {result['requests_per_s']} requests/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} "
              f"ms, errors {result['errors'] or 'none'}; ready after {result['ready_seconds']} s; ranker "
              f"{result['ranker']}")
    (args.out / "scale_out.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
