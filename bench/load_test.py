"""The load test of issue 14: 16 clients on loopback for 2 minutes (bounded in count too) on /recommend
(reranked), /score-essay and /classify together, against `edurank serve` in its own process with every
model loaded. Prints per route the requests answered, p50 and p99 latency and every non-200 answer, and
the service's memory after warm-up, after the load and at its peak (growth under load is a leak's sign).

    .venv/bin/python bench/load_test.py --catalog ../shared/data/curriculum --reranker artifacts/exp/ce-l2 \\
        --essays artifacts/exp/essays-s6 --essay-data ../shared/data/fb3/train.csv \\
        --classifier artifacts/exp/classifier-s6-student --response-data ../shared/data/map/train.csv
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
from loadgen import load_mixed, peak_rss_mib, rss_mib, wait_ready

from edurank.classifier.data import ANSWER, EXPLANATION, QUESTION, load_responses
from edurank.essays.data import TEXT, load_essays
from edurank.retriever.catalog import load_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--reranker", required=True, help="the cross-encoder that reranks /recommend")
    parser.add_argument("--essays", required=True)
    parser.add_argument("--essay-data", type=Path, required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--response-data", type=Path, required=True)
    parser.add_argument("--backend", default="torch", help="torch, onnx or onnx-int8 (exports under --out)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--port", type=int, default=8768)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/load"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    topics = load_catalog(args.catalog).topics_with_content()["id"].to_list()
    essays = load_essays(args.essay_data)[TEXT].gather_every(8).to_list()
    responses = load_responses(args.response_data).select(QUESTION, ANSWER, EXPLANATION).gather_every(7)
    routes = {"/recommend": [{"topic_id": topic} for topic in topics],
              "/score-essay": [{"text": text} for text in essays],
              "/classify": [{"question_id": q, "answer": a, "explanation": e} for q, a, e in responses.iter_rows()]}
    env = {**os.environ, "EDURANK_ARTIFACTS": str(args.out), "EDURANK_BACKEND": args.backend,
           "EDURANK_CATALOG": str(args.catalog), "EDURANK_TRAIN_RANKER": "false", "EDURANK_RERANKER": args.reranker,
           "EDURANK_ESSAYS": args.essays, "EDURANK_CLASSIFIER": args.classifier, "EDURANK_MAX_QUEUE": "4096"}
    log_path = args.out / "server.log"
    server = subprocess.Popen([sys.executable, "-m", "edurank.cli", "serve", "--port", str(args.port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
    url = f"http://127.0.0.1:{args.port}"
    try:
        ready = wait_ready(url, server, log_path, timeout=1200)["registry"]
        assert ready["reranker"] and ready["essays"] and ready["classifier"], ready
        asyncio.run(load_mixed(url, {r: b[:4] for r, b in routes.items()}, 4, 60, 24))  # warm-up
        before = rss_mib(server.pid)
        results = asyncio.run(load_mixed(url, routes, args.clients, args.seconds, args.max_requests))
        after = rss_mib(server.pid)
        health = httpx.get(f"{url}/health", timeout=5).status_code
        print(f"{args.clients} clients, {args.seconds:g} s at most, {args.max_requests} requests at most, "
              f"backend {args.backend}; /health after: {health}")
        total = 0
        for route, result in results.items():
            latencies = np.array(result["latencies"]) * 1000
            p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (float("nan"),) * 2
            total += len(latencies) + sum(result["errors"].values())
            print(f"{route:<13} {len(latencies):>5} answered  p50 {p50:7.0f} ms  p99 {p99:7.0f} ms  "
                  f"errors {result['errors'] or 'none'}")
        print(f"requests {total}; memory after warm-up {before:.0f} MiB, after the load {after:.0f} MiB "
              f"(growth {after - before:+.0f} MiB), peak {peak_rss_mib(server.pid):.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
