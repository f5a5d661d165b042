"""The service with every model loaded, per backend: /score-essay and /classify latency and throughput at 1, 4
and 16 concurrent clients on loopback (one essay or response per request, so concurrency is what batches
them), the share of time per stage, and the service process's peak memory (retriever and its index,
cross-encoder, essay scorer and classifier all loaded). The service runs in its own process (`edurank
serve`); for an ONNX backend the exports it needs are made first under `<out>/exports`.

    .venv/bin/python bench/service_models.py --catalog ../shared/data/curriculum --reranker artifacts/reranker \\
        --essays artifacts/essays --essay-data ../shared/data/fb3/train.csv --classifier artifacts/classifier \\
        --response-data ../shared/data/map/train.csv --backend torch --backend onnx-int8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from loadgen import batch_mean, load, peak_rss_mib, stage_deltas, wait_ready

from edurank.artifacts import Manifest
from edurank.backends.export import EXPORTS, find_export
from edurank.backends.onnx import TORCH
from edurank.classifier.data import ANSWER, EXPLANATION, QUESTION, load_responses
from edurank.cli.main import main as edurank_cli
from edurank.encoders import fingerprint, model_path
from edurank.essays.data import TEXT, load_essays

ROUTES = {"essays": ("/score-essay", "essays"), "classifier": ("/classify", "classifier")}


def exported(out: Path, backend: str, models: dict[str, tuple[Path, Path]]) -> None:
    """Every model's `backend` export under `<out>/exports`, made when missing (kind -> (model, check data))."""
    for kind, (path, data) in models.items():
        if find_export(out / EXPORTS, kind, fingerprint(path), backend) is None:
            if edurank_cli(["export", "--model", str(path), "--data", str(data), "--backend", backend, "--out",
                        str(out / EXPORTS), "--check-items", "64", "--min-rank-agreement", "0",
                        "--max-metric-delta", "1"]):
                raise SystemExit(f"exporting {path} for {backend} failed")


def run_load(url: str, route: str, model: str, bodies: list[dict[str, Any]], clients: int) -> str:
    before = httpx.get(f"{url}/metrics").text
    result = asyncio.run(load(f"{url}{route}", bodies, clients))
    after = httpx.get(f"{url}/metrics").text
    latencies = np.array(result["latencies"]) * 1000
    p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (float("nan"),) * 2
    stages = stage_deltas(before, after)
    stages.pop("batch", None)  # a request's wait for and share of its batch: the per-batch stages below, again
    total = sum(stages.values()) or 1.0
    shares = "  ".join(f"{stage} {seconds / total:.0%}" for stage, seconds in sorted(stages.items()))
    return (f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {len(latencies) / result['seconds']:6.2f} requests/s  "
            f"mean batch {batch_mean(before, after, model):4.1f}  errors {result['errors'] or 'none'}  "
            f"the batches' time: {shares}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--retriever", default="bundled")
    parser.add_argument("--reranker", required=True)
    parser.add_argument("--essays", required=True)
    parser.add_argument("--essay-data", type=Path, required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--response-data", type=Path, required=True)
    parser.add_argument("--backend", action="append", default=None, help="torch, onnx, onnx-int8 (repeatable)")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--essay-requests", type=int, default=48)
    parser.add_argument("--classify-requests", type=int, default=400)
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/models"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    paths = {kind: model_path(getattr(args, kind)) for kind in ("retriever", "reranker", "essays", "classifier")}
    checks = {"retriever": args.catalog, "reranker": args.catalog, "essays": args.essay_data,
              "classifier": args.response_data}
    essays = load_essays(args.essay_data)
    essay_bodies = [{"text": text} for text in essays[TEXT].gather_every(max(essays.height // 500, 1)).to_list()]
    responses = load_responses(args.response_data)
    classify_bodies = [{"question_id": q, "answer": a, "explanation": e} for q, a, e in
                       responses.select(QUESTION, ANSWER, EXPLANATION).gather_every(7).iter_rows()]
    bodies = {"essays": essay_bodies, "classifier": classify_bodies}
    counts = {"essays": args.essay_requests, "classifier": args.classify_requests}
    print("models: " + ", ".join(f"{kind} {Manifest.read(p).version if (p / 'manifest.json').is_file() else p.name}"
                                 for kind, p in paths.items()), flush=True)
    for backend in args.backend or [TORCH]:
        if backend != TORCH:
            exported(args.out, backend, {kind: (paths[kind], checks[kind]) for kind in paths})
        env = {**os.environ, "EDURANK_ARTIFACTS": str(args.out), "EDURANK_BACKEND": backend,
               "EDURANK_CATALOG": str(args.catalog), "EDURANK_TRAIN_RANKER": "false", "EDURANK_MAX_QUEUE": "4096",
               **{f"EDURANK_{kind.upper()}": str(path) for kind, path in paths.items()}}
        log_path = args.out / f"server-{backend}.log"
        server = subprocess.Popen([sys.executable, "-m", "edurank.cli", "serve", "--port", str(args.port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
        url = f"http://127.0.0.1:{args.port}"
        try:
            wait_ready(url, server, log_path, timeout=1200)
            print(f"{backend}: peak memory with every model loaded {peak_rss_mib(server.pid):.0f} MiB", flush=True)
            for kind, (route, model) in ROUTES.items():
                asyncio.run(load(f"{url}{route}", bodies[kind][:8], 4))  # warm-up
                for clients in (int(c) for c in args.clients.split(",")):
                    work = bodies[kind][8:8 + counts[kind]]
                    print(f"{backend:<9} {route:<12} {clients:>2} clients: "
                          f"{run_load(url, route, model, work, clients)}", flush=True)
            print(f"{backend}: peak memory after the load {peak_rss_mib(server.pid):.0f} MiB", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
