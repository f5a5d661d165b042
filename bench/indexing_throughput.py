"""Indexing throughput of `edurank index`'s embedding step, per backend, against a plain
`SentenceTransformer.encode` (torch fp32) over the same texts, in one process, alternating them so machine
noise hits all alike; each backend's vectors are compared with torch's (cosine).

    .venv/bin/edurank export --model bundled --backend onnx-int8 --out artifacts/exports
    .venv/bin/python bench/indexing_throughput.py --catalog ../shared/data/curriculum --repeat 3 \\
        --export artifacts/exports/<version> ...
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edurank.retriever.catalog import load_catalog
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import content_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--model", default=None, help="the torch model (default: bundled)")
    parser.add_argument("--export", action="append", default=[], help="an `edurank export` of it (repeatable)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    torch_encoder = BiEncoder.load(args.model)
    encoders = {"torch": torch_encoder}
    for path in args.export:
        exported = BiEncoder.load(path)
        encoders[f"{exported.backend} ({Path(exported.path).name})"] = exported
    texts = content_texts(load_catalog(args.catalog), torch_encoder.builder)
    for encoder in encoders.values():
        encoder.encode(texts[:64])  # warm-up: first-call allocations are not throughput
    seconds: dict[str, list[float]] = {name: [] for name in ["plain", *encoders]}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.repeat):
        start = time.perf_counter()
        reference = torch_encoder.model.encode(texts, batch_size=32, normalize_embeddings=True)
        seconds["plain"].append(time.perf_counter() - start)
        for name, encoder in encoders.items():
            start = time.perf_counter()
            vectors[name] = encoder.encode(texts, args.batch_size)
            seconds[name].append(time.perf_counter() - start)
    assert np.allclose(vectors["torch"], reference, atol=1e-4), "the indexing job must embed exactly like encode()"
    plain_rate = len(texts) / np.median(seconds["plain"])
    print(f"items: {len(texts)}  max_tokens: {torch_encoder.max_tokens}  repeats: {args.repeat}")
    print(f"  {'SentenceTransformer.encode (torch fp32)':<44} {plain_rate:8.1f} items/s  ratio 1.00")
    for name in encoders:
        rate = len(texts) / np.median(seconds[name])
        cosine = np.einsum("ij,ij->i", vectors[name], reference)
        print(f"  {'edurank index, ' + name:<44} {rate:8.1f} items/s  ratio {rate / plain_rate:4.2f}  "
              f"cosine to torch mean {cosine.mean():.4f} min {cosine.min():.4f}")


if __name__ == "__main__":
    main()
