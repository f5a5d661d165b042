"""Throughput of the cross-encoder, the essay scorer and the classifier per backend (torch fp32, ONNX fp32,
ONNX int8) on the same held-out slice in one process, with each export's agreement with torch: the figures
`edurank export`'s own check computes, on a larger slice, torch and the export alternating `--repeat` times
(medians), so machine noise hits both alike. Exports missing under `--exports` are made first. `--baseline`
names a second model of the same kind (a bigger one the exported model would replace): each export is also
timed against its torch run, on the same slice in the same run, with the same agreement figures.

    .venv/bin/python bench/backend_throughput.py --kind reranker --model artifacts/exp/ce-list \\
        --data ../shared/data/curriculum --items 2048
    .venv/bin/python bench/backend_throughput.py --kind classifier --model artifacts/classifier \\
        --data ../shared/data/map/train.csv --items 1024
    .venv/bin/python bench/backend_throughput.py --kind essays --model artifacts/essays \\
        --data ../shared/data/fb3/train.csv --items 64
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edurank.backends.config import EXPORTED
from edurank.backends.export import find_export, spread_rows
from edurank.classifier import export as classifier_export
from edurank.classifier.data import load_responses
from edurank.classifier.predictor import MisconceptionClassifier
from edurank.cli.main import main as edurank_cli
from edurank.encoders import model_path, set_threads
from edurank.essays import export as essays_export
from edurank.essays.data import load_essays
from edurank.essays.scorer import EssayScorer
from edurank.reranker.cross_encoder import export as reranker_export
from edurank.reranker.cross_encoder.model import Reranker
from edurank.retriever.catalog import load_catalog

# kind -> (load(path), check slice of `items` from --data, agreement(source, exported, slice) -> metrics, quality)
KINDS: dict[str, tuple[Callable[[Path], Any], Callable[[Path, int], Any], Callable[..., dict[str, Any]], str]] = {
    "reranker": (Reranker.load, lambda data, n: reranker_export.check_lists(load_catalog(data), n),
                 reranker_export.agreement, "spearman_mean"),
    "essays": (EssayScorer.load, lambda data, n: spread_rows(load_essays(data), n), essays_export.agreement,
               "mcrmse_delta"),
    "classifier": (MisconceptionClassifier.load, lambda data, n: spread_rows(load_responses(data), n),
                   classifier_export.agreement, "map3_delta"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=list(KINDS), required=True)
    parser.add_argument("--model", required=True, help="the trained torch artifact")
    parser.add_argument("--data", type=Path, required=True, help="catalog (reranker) or CSV: the slice's source")
    parser.add_argument("--items", type=int, default=1024, help="pairs, essays or responses in the slice")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exports", type=Path, default=Path("artifacts/bench/exports"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--baseline", default=None, help="a second torch model of the same kind to compare with")
    args = parser.parse_args()

    set_threads(args.threads)
    load, make_slice, agreement, quality = KINDS[args.kind]
    path = model_path(args.model)
    source = load(path)
    fingerprint = source.source_fingerprint if args.kind == "reranker" else source.manifest.weights
    work = make_slice(args.data, args.items)
    baseline = load(model_path(args.baseline)) if args.baseline else None
    print(f"{args.kind} {path.name}: {args.items} items from {args.data}, {args.repeat} repeats (medians)")
    for backend in EXPORTED:
        export = find_export(args.exports, args.kind, fingerprint, backend)
        if export is None:
            if edurank_cli(["export", "--model", str(path), "--data", str(args.data), "--out", str(args.exports),
                        "--backend", backend, "--check-items", "64", "--min-rank-agreement", "0",
                        "--max-metric-delta", "1"]):
                raise SystemExit(f"exporting {path} for {backend} failed")
            export = find_export(args.exports, args.kind, fingerprint, backend)
        exported = load(export)
        against = {"torch fp32": source, **({f"{args.baseline} torch fp32": baseline} if baseline else {})}
        for name, reference in against.items():
            runs = [agreement(reference, exported, work) for _ in range(args.repeat)]
            torch_rate = float(np.median([r["torch_items_per_s"] for r in runs]))
            rate = float(np.median([r["items_per_s"] for r in runs]))
            print(f"  {name} {torch_rate:8.2f} items/s | {backend:<9} {rate:8.2f} items/s  ratio "
                  f"{rate / torch_rate:4.2f}  {quality} {runs[0][quality]}  "
                  + "  ".join(f"{k} {v}" for k, v in runs[0].items() if k not in (quality,) and "second" not in k
                              and "items_per_s" not in k and k != "speedup"), flush=True)


if __name__ == "__main__":
    main()
