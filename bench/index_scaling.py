"""Index build time, search latency and recall@10 against exact search, for exact (flat), IVF and HNSW FAISS
indexes at growing catalog sizes, built by the indexing job's own `build_faiss`.

The vectors are the given catalog's real content embeddings, tiled with Gaussian jitter and renormalised
(real embeddings cluster; uniform random vectors would flatter nobody and mislead IVF), and the queries are
its topic vectors, so neighbours are as close as in a real catalog.

    .venv/bin/python bench/index_scaling.py --catalog ../shared/data/curriculum --sizes 100000,1000000 \\
        --hnsw-up-to 100000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np

from edurank.retriever.catalog import load_catalog
from edurank.retriever.config import INDEX_TYPES
from edurank.retriever.content_index import build_faiss
from edurank.retriever.model import BiEncoder


def tiled(base: np.ndarray, count: int, jitter: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = np.tile(base, (-(-count // len(base)), 1))[:count]
    vectors = vectors + rng.normal(0, jitter, vectors.shape).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--jitter", type=float, default=0.02, help="per-dimension noise of the copies")
    parser.add_argument("--hnsw-up-to", type=int, default=100_000, help="skip HNSW above this size (slow build)")
    parser.add_argument("--types", default=",".join(INDEX_TYPES), help="index types; recall needs flat first")
    parser.add_argument("--cache", type=Path, default=Path("artifacts/bench/index_scaling"))
    args = parser.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    cached = args.cache / "base.npz"
    if not cached.is_file():
        encoder, catalog = BiEncoder.load(args.model), load_catalog(args.catalog)
        np.savez(cached, content=encoder.encode_content(catalog, progress=True), topics=encoder.encode_topics(catalog))
    with np.load(cached) as stored:
        content, topics = stored["content"], stored["topics"]
    queries = topics[np.random.default_rng(1).choice(len(topics), min(args.queries, len(topics)), replace=False)]
    print(f"{faiss.omp_get_max_threads()} threads; {len(queries)} queries (catalog topics), k=10")
    for size in (int(s) for s in args.sizes.split(",")):
        vectors = tiled(content, size, args.jitter)
        exact = None
        for kind in args.types.split(","):
            if kind == "hnsw" and size > args.hnsw_up_to:
                print(f"{size:>9} {kind:<5} skipped (--hnsw-up-to {args.hnsw_up_to})")
                continue
            started = time.perf_counter()
            index = build_faiss(vectors, kind)
            built = time.perf_counter() - started
            started = time.perf_counter()
            for query in queries:  # one at a time, as /recommend searches
                index.search(query[None, :], 10)
            per_query = (time.perf_counter() - started) / len(queries) * 1000
            found = index.search(queries, 10)[1]
            exact = found if kind == "flat" else exact
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
            print(f"{size:>9} {kind:<5} build {built:7.1f} s  search {per_query:7.2f} ms/query  "
                  f"recall@10 vs exact {recall:.3f}", flush=True)
            del index


if __name__ == "__main__":
    main()
