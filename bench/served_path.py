"""`/recommend` as users call it: the LightGBM ranker path against `edurank serve` in its own process.

Per catalog (the given one, and `--items` rows made from it as bench/service_latency.py makes its 100k catalog)
and per backend (torch, onnx-int8, ...), one service is started with `EDURANK_*` settings as users start it
(plus each `--variant`'s, to compare settings in one run) and sent, by topic id and by text, 1, 4 and 16
concurrent clients, and `explain: true` at one client; each row prints p50 / p99 / requests/s and the mean ms
per stage from /metrics over that row alone.

Every request is a miss of the service's vector cache while the pools last: by id, the catalog's topics in
turn (each row continues where the last stopped); by text, a content item's title and description as a
free-text topic. The ranker (`edurank train ranker`, bundled retriever), the exports (`edurank export`) and
the indexes are made on the first run under `--out` and reused.

    .venv/bin/python bench/served_path.py --catalog ../shared/data/curriculum --backend torch \
        --backend onnx-int8 --items 0,100000 --clients 1,4,16 --requests 150
"""

from __future__ import annotations

import argparse
import asyncio
import os
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
from loadgen import load, service, stage_means_between
from service_latency import build_large_catalog, exported

from edurank.backends.export import EXPORTS
from edurank.cli.main import main as edurank_cli
from edurank.retriever.catalog import load_catalog
from edurank.retriever.model import BiEncoder

STAGES = ("encode", "candidates", "neighbours", "features", "rank", "explain")


def ranker(catalog: Path, out: Path) -> Path:
    """The bench's ranker (default groups, the bundled retriever), trained on `catalog` the first time."""
    root = out / "ranker"
    if not (root / "LATEST").is_file() and edurank_cli(
            ["train", "ranker", "--catalog", str(catalog), "--retriever", "bundled", "--out", str(root)]):
        raise SystemExit("training the ranker failed")
    return root


def bodies(catalog: Path) -> dict[str, list[dict[str, Any]]]:
    """The request pools: by id, every topic; by text, each content item with a title as a free-text topic."""
    loaded = load_catalog(catalog)
    texts = (loaded.content.filter(pl.col("title").str.len_chars() > 0)
             .unique("title", keep="first", maintain_order=True).select("title", "description", "language"))
    return {"id": [{"topic_id": t} for t in loaded.topics["id"]],
            "text": [{"topic": {"title": t, "description": (d or "")[:300] or None, "language": lang}}
                     for t, d, lang in texts.iter_rows()]}


def row(url: str, name: str, pool: Any, clients: int, requests: int) -> None:
    """One measured row: `requests` bodies from `pool` at `clients` clients; its figures and stage means."""
    before = httpx.get(f"{url}/metrics").text
    result = asyncio.run(load(f"{url}/recommend", list(islice(pool, requests)), clients))
    stages = stage_means_between(before, httpx.get(f"{url}/metrics").text)
    ms = np.array(result["latencies"]) * 1000
    p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (float("nan"),) * 2
    shown = "  ".join(f"{s} {stages[s] * 1000:.1f}" for s in STAGES if s in stages)
    print(f"  {name:<8} {clients:>2} clients: p50 {p50:6.1f}  p99 {p99:6.1f} ms  {len(ms) / result['seconds']:6.1f} "
          f"req/s  p99/p50 {p99 / p50:.2f}  errors {result['errors'] or 'none'} | ms: {shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--backend", action="append", choices=("torch", "onnx", "onnx-int8"),
                        help="repeatable; default: torch and onnx-int8")
    parser.add_argument("--items", default="0,100000", help="catalog sizes; 0: the catalog as given")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=150, help="measured requests per row")
    parser.add_argument("--modes", default="id,text,explain", help="rows: by id, by text, by id with explain")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                        help="a service with these EDURANK_* settings too (repeatable); 'base' has none")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/served"))
    args = parser.parse_args()

    source = BiEncoder.load(None)
    ranker_root = ranker(args.catalog, args.out)
    variants = {"base": {}} | {v.split(":", 1)[0]: dict(kv.split("=", 1) for kv in v.split(":", 1)[1].split(","))
                               for v in args.variant}
    clients = [int(c) for c in args.clients.split(",")]
    for items in (int(i) for i in args.items.split(",")):
        for backend in args.backend or ["torch", "onnx-int8"]:
            encoder = source if backend == "torch" else BiEncoder.load(
                exported(source.path, args.catalog, backend, args.out / EXPORTS))
            env = {**os.environ, "EDURANK_ARTIFACTS": str(args.out), "EDURANK_RANKER": str(ranker_root),
                   "EDURANK_BACKEND": backend, "EDURANK_TRAIN_RANKER": "false", "EDURANK_CATALOG": str(args.catalog)}
            index_name = "index" if backend == "torch" else f"index-{backend}"  # the service's own default
            if items:  # the large catalog's index is built from the backend's own vectors, as the service would
                index_dir = args.out / f"items-{items}" / index_name
                env |= {"EDURANK_INDEX": str(index_dir), "EDURANK_BUILD_INDEX": "false", "EDURANK_CATALOG": str(
                    build_large_catalog(args.catalog, encoder, items, args.out / f"items-{items}", index_dir,
                                        source_index=args.out / index_name))}
            pools = bodies(Path(env["EDURANK_CATALOG"]))
            for name, settings in variants.items():
                with service(env | settings, args.port, args.out / "server.log") as (url, ready):
                    print(f"{ready['registry']['catalog_items']:,} items, {backend}, {name} {settings or ''}",
                          flush=True)
                    by_id, by_text = iter(pools["id"] * 4), iter(pools["text"] * 4)
                    asyncio.run(load(f"{url}/recommend", list(islice(by_id, 8)) + list(islice(by_text, 8)), 2))
                    for mode in args.modes.split(","):
                        pool = by_text if mode == "text" else by_id
                        for count in clients if mode != "explain" else [1]:
                            if mode == "explain":
                                pool = ({**body, "explain": True} for body in by_id)
                            row(url, mode, pool, count, args.requests)


if __name__ == "__main__":
    main()
