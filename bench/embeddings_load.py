"""Dynamic batching under load: /v1/embeddings with one text per request at 1, 4 and 16 concurrent clients
on loopback, served with batching off (EDURANK_BATCH_MAX_ITEMS=1) and on, in one run, per backend, and the
service process's peak memory per backend (the retriever and its index loaded, no ranker). The service
runs in its own process (`edurank serve`) on the bundled sample catalog; texts are the given catalog's
content (cut to 1,000 characters), so their lengths are real.

    .venv/bin/python bench/embeddings_load.py --catalog ../shared/data/curriculum --backend torch \\
        --backend onnx-int8 --requests 300
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
from loadgen import batch_mean, load, peak_rss_mib, wait_ready

from edurank.cli.main import main as edurank_cli
from edurank.retriever.catalog import load_catalog
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import content_texts


def serve(out: Path, port: int, backend: str, batch: int) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "EDURANK_ARTIFACTS": str(out), "EDURANK_BACKEND": backend, "EDURANK_TRAIN_RANKER": "false",
           "EDURANK_BATCH_MAX_ITEMS": str(batch), "EDURANK_MAX_QUEUE": "4096"}
    log_path = out / f"server-{backend}-{batch}.log"
    server = subprocess.Popen([sys.executable, "-m", "edurank.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, server, log_path)
    return server, url


def row(result: dict[str, Any], mean_batch: float) -> str:
    latencies = np.array(result["latencies"]) * 1000
    p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (float("nan"),) * 2
    return (f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {len(latencies) / result['seconds']:6.1f} requests/s  "
            f"mean batch {mean_batch:5.1f}  errors {result['errors'] or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True, help="where the request texts come from")
    parser.add_argument("--backend", action="append", default=None, help="torch, onnx, onnx-int8 (repeatable)")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32, help="EDURANK_BATCH_MAX_ITEMS when batching is on")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/embeddings"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    texts = content_texts(load_catalog(args.catalog), BiEncoder.load(None).builder)
    bodies = [{"input": text[:1000]} for text in texts]
    for backend in args.backend or ["torch"]:
        if backend != "torch" and edurank_cli(["export", "--backend", backend, "--out", str(args.out / "exports")]):
            raise SystemExit(f"exporting the bundled model for {backend} failed")
        for batch in (1, args.batch):
            server, url = serve(args.out, args.port, backend, batch)
            try:
                asyncio.run(load(f"{url}/v1/embeddings", bodies[:32], 4))  # warm-up
                for clients in (int(c) for c in args.clients.split(",")):
                    before = httpx.get(f"{url}/metrics").text
                    result = asyncio.run(load(f"{url}/v1/embeddings", bodies[:args.requests], clients))
                    after = httpx.get(f"{url}/metrics").text
                    print(f"{backend:<9} batch<={batch:<3} {clients:>2} clients: "
                          f"{row(result, batch_mean(before, after, 'retriever'))}", flush=True)
                print(f"{backend:<9} batch<={batch:<3} peak memory of the service process: "
                      f"{peak_rss_mib(server.pid):.0f} MiB", flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
