"""`/recommend` latency under load: a 100k-item index, 32 candidates reranked, N concurrent clients on loopback.

The 100k-item catalog is the given catalog's content repeated (copies' ids suffixed `~k`, text cut to 1,000
characters) until it holds `--items` rows; its vectors are the real embeddings of the originals plus a
little Gaussian jitter, renormalised, so FAISS searches 100k distinct vectors (embedding 100k items on
this CPU would take half an hour and measure the indexing job, not the service). The service runs in its
own process (`edurank serve`), started with `EDURANK_*` settings, exactly as users start it.

    .venv/bin/python bench/service_latency.py --catalog ../shared/data/curriculum \
        --retriever artifacts/retriever --reranker artifacts/reranker --clients 1,4,16 --requests 200 \
        --backend onnx-int8

With an ONNX `--backend`, the retriever's and the reranker's exports are made first (under `<out>/exports`,
where the service looks) and the 100k index is built from the exported retriever's vectors, as the service
would build `index-<backend>` itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path

import httpx
import numpy as np
import polars as pl
from loadgen import histogram_means, load, service, stage_means

from edurank.artifacts import MANIFEST, Manifest
from edurank.backends.export import EXPORTS, find_export
from edurank.cli.main import main as edurank_cli
from edurank.encoders import fingerprint, model_path
from edurank.retriever.catalog import load_catalog
from edurank.retriever.index_job import load_index, publish_index
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import content_texts


def build_large_catalog(source: Path, encoder: BiEncoder, items: int, out: Path, index_dir: Path,
                        seed: int = 0, source_index: Path | None = None) -> Path:
    """Write `out/catalog` (topics and correlations as given, content repeated to `items` rows) and publish
    its index under `index_dir`; reuse both when they exist. The originals' vectors are read from
    `source_index` (an index of `source` by `encoder`) where it exists, else embedded."""
    catalog_dir = out / "catalog"
    if (index_dir / "LATEST").is_file():
        return catalog_dir
    original = load_catalog(source)
    copies = -(-items // len(original.content))
    if not (catalog_dir / "content.parquet").is_file():
        content = pl.concat([
            original.content.with_columns((pl.col("id") + (f"~{k}" if k else "")).alias("id"),
                                          pl.col("text").str.slice(0, 1000))
            for k in range(copies)]).head(items)  # copy 0 keeps the real ids, so the correlations still hold
        catalog_dir.mkdir(parents=True, exist_ok=True)
        content.write_parquet(catalog_dir / "content.parquet")
        for name in ("topics", "correlations"):
            pl.read_csv(source / f"{name}.csv", infer_schema=False).write_parquet(catalog_dir / f"{name}.parquet")
    large = load_catalog(catalog_dir)
    if source_index is not None and (source_index / "LATEST").is_file():
        base = load_index(source_index, encoder).vectors_of(np.arange(len(original.content)))
    else:
        base = encoder.encode(content_texts(original, encoder.builder), progress=True)
    rng = np.random.default_rng(seed)
    vectors = np.tile(base, (copies, 1))[:items] + rng.normal(0, 0.02, (copies * len(base), base.shape[1]))[:items]
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    vectors[:len(base)] = base  # the originals keep their exact vectors
    publish_index(vectors, encoder, large, index_dir, params={"synthetic": "jittered copies, bench only"})
    return catalog_dir


def exported(model: Path, catalog: Path, backend: str, root: Path) -> Path:
    """The newest `backend` export of `model` under `root`, made first (`edurank export`, checked on `catalog`)
    when there is none."""
    kind = Manifest.read(model).kind if (model / MANIFEST).is_file() else BiEncoder.KIND
    found = find_export(root, kind, fingerprint(model), backend)
    if found is None:
        if edurank_cli(["export", "--model", str(model), "--data", str(catalog), "--backend", backend,
                        "--out", str(root)]):
            raise SystemExit(f"exporting {model} for {backend} failed")
        found = find_export(root, kind, fingerprint(model), backend)
    assert found is not None
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--retriever", default=None, help="default: bundled")
    parser.add_argument("--reranker", required=True)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--clients", default="8", help="concurrent clients; a comma list runs each in turn")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per client count")
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx", "onnx-int8"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/latency"))
    args = parser.parse_args()

    source = BiEncoder.load(args.retriever)
    encoder, index_dir = source, args.out / "index"
    if args.backend != "torch":
        exported(model_path(args.reranker), args.catalog, args.backend, args.out / EXPORTS)
        encoder = BiEncoder.load(exported(source.path, args.catalog, args.backend, args.out / EXPORTS))
        index_dir = args.out / f"index-{args.backend}"
    catalog_dir = build_large_catalog(args.catalog, encoder, args.items, args.out, index_dir)
    env = {**os.environ, "EDURANK_CATALOG": str(catalog_dir), "EDURANK_INDEX": str(index_dir),
           "EDURANK_RETRIEVER": str(source.path), "EDURANK_RERANKER": args.reranker, "EDURANK_BACKEND": args.backend,
           "EDURANK_ARTIFACTS": str(args.out), "EDURANK_BUILD_INDEX": "false", "EDURANK_TRAIN_RANKER": "false"}
    with service(env, args.port, args.out / "server.log") as (url, ready):
        print(f"backend {args.backend}; index: {ready['registry']['catalog_items']} items; versions "
              f"{ready['registry']['versions']}; "
              f"{args.candidates} candidates reranked; {args.requests} requests per row", flush=True)
        topics = pl.read_parquet(catalog_dir / "correlations.parquet")["topic_id"].to_list()
        bodies = [{"topic_id": topic, "candidates": args.candidates} for topic in topics]
        asyncio.run(load(f"{url}/recommend", bodies[:args.warmup], 4))
        for clients in (int(c) for c in args.clients.split(",")):
            result = asyncio.run(load(f"{url}/recommend", (bodies[args.warmup:] * args.requests)[:args.requests],
                                      clients))
            latencies = np.array(result["latencies"]) * 1000
            p = np.percentile(latencies, [50, 90, 99]) if len(latencies) else [float("nan")] * 3
            mean = statistics.mean(latencies) if len(latencies) else float("nan")
            print(f"{clients:>2} clients: p50 {p[0]:.0f}  p90 {p[1]:.0f}  p99 {p[2]:.0f}  mean {mean:.0f} ms; "
                  f"{len(latencies) / result['seconds']:.2f} requests/s; errors {result['errors'] or 'none'}",
                  flush=True)
        metrics = httpx.get(f"{url}/metrics").text
    stages = stage_means(metrics)
    batches = histogram_means(metrics, "edurank_batch_size", "model")
    print("mean ms per stage, all rows and warm-up: " + "  ".join(f"{k} {v * 1000:.1f}" for k, v in stages.items()))
    print("mean items per forward pass: " + "  ".join(f"{k} {v:.1f}" for k, v in batches.items()))


if __name__ == "__main__":
    main()
