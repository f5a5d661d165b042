"""What a curator's screen costs, end to end over HTTP against `edurank serve` on a catalog: one client, topic
after topic, each route timed in the same run so their ratios hold:

1. POST /recommend without `explain` (what a platform calls) and with it (readable reasons added);
2. GET /review/topic/{id} (the review page: the 10 best candidates with reasons, the topic's decisions);
3. POST /review/decisions and POST /feedback, one decision each (acknowledged only once committed).

    .venv/bin/python bench/curator_paths.py --catalog ../shared/data/curriculum \\
        --ranker artifacts/exp/curator-curriculum/ranker --out /tmp/curator-paths --topics 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import wait_ready  # noqa: E402


def timed(times: list[float], call: Callable[[], httpx.Response]) -> httpx.Response:
    """One call, which must answer 2xx; its milliseconds appended to `times`."""
    started = time.perf_counter()
    response = call()
    times.append((time.perf_counter() - started) * 1000)
    if not response.is_success:
        raise SystemExit(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                         f"{response.text[:300]}")
    return response


def summary(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms)
    return {"p50": round(float(np.percentile(values, 50)), 1), "p99": round(float(np.percentile(values, 99)), 1),
            "mean": round(float(values.mean()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--ranker", type=Path, required=True, help="a trained ranker's root or version")
    parser.add_argument("--out", type=Path, required=True, help="artifacts directory of the service (fresh)")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EDURANK_ARTIFACTS": str(args.out), "EDURANK_PORT": str(args.port),
           "EDURANK_CATALOG": str(args.catalog), "EDURANK_RANKER": str(args.ranker), "HF_HUB_OFFLINE": "1"}
    log_path = args.out.with_suffix(".log")
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "edurank.cli", "serve"], env=env, stdout=log, stderr=log)
    topics = pl.read_csv(args.catalog / "topics.csv", infer_schema=False).filter(pl.col("has_content") == "True")
    ids = topics["id"].sample(n=min(args.topics, len(topics)), seed=0).to_list()
    ms: dict[str, list[float]] = {name: [] for name in ("recommend", "recommend_explain", "review_page",
                                                        "review_decision", "feedback")}
    reasons = 0
    try:
        wait_ready(url, server, log_path)
        with httpx.Client(base_url=url, timeout=120) as client:
            client.post("/recommend", json={"topic_id": ids[0], "explain": True})  # warm-up
            for topic in ids:
                timed(ms["recommend"], lambda t=topic: client.post("/recommend", json={"topic_id": t}))
                answer = timed(ms["recommend_explain"], lambda t=topic: client.post(
                    "/recommend", json={"topic_id": t, "explain": True})).json()
                reasons += sum(len(item["reasons"]) for item in answer["items"])
                timed(ms["review_page"], lambda t=topic: client.get(f"/review/topic/{t}"))
                if not answer["items"]:
                    continue
                item = answer["items"][0]
                decision = {"topic_id": topic, "content_id": item["id"], "decision": "accepted", "rank": 1,
                            "probability": item["probability"], "who": "bench"}
                timed(ms["review_decision"], lambda d=decision: client.post(
                    "/review/decisions", json=d, headers={"Origin": url}))
                timed(ms["feedback"], lambda d=decision: client.post(
                    "/feedback", json={"decisions": [{**d, "decision": "imported"}]}))
    finally:
        server.terminate()
        server.wait(30)
    figures = {"topics": len(ids), "reasons_per_topic": round(reasons / len(ids), 2),
               **{name: summary(values) for name, values in ms.items() if values}}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
