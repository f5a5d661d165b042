"""Indexing throughput of `edurank index`'s embedding step against a plain `SentenceTransformer.encode`
over the same texts, in one process, alternating the two so machine noise hits both alike.

    .venv/bin/python bench/indexing_throughput.py --catalog ../shared/data/curriculum --repeat 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from retriever.catalog import load_catalog
from retriever.indexing import embed_content
from retriever.model import BiEncoder
from retriever.texts import content_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    encoder = BiEncoder.load(args.model)
    texts = content_texts(load_catalog(args.catalog), encoder.builder)
    encoder.encode(texts[:64])  # warm-up: first-call allocations are not throughput
    ours, plain = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        vectors = embed_content(encoder, texts, args.batch_size, progress=False)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = encoder.model.encode(texts, batch_size=32, normalize_embeddings=True)
        plain.append(time.perf_counter() - start)
    assert np.allclose(vectors, reference, atol=1e-4), "the indexing job must embed exactly like encode()"
    ours_rate, plain_rate = len(texts) / np.median(ours), len(texts) / np.median(plain)
    print(f"items: {len(texts)}  max_tokens: {encoder.max_tokens}  repeats: {args.repeat}")
    print(f"edurank index embedding : {ours_rate:8.1f} items/s (median of {[round(t, 1) for t in ours]} s)")
    print(f"SentenceTransformer.encode: {plain_rate:8.1f} items/s (median of {[round(t, 1) for t in plain]} s)")
    print(f"ratio edurank / plain     : {ours_rate / plain_rate:8.2f}")


if __name__ == "__main__":
    main()
