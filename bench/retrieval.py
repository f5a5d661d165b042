"""Held-out retrieval before and after training, round by round: trains (or reuses a finished run with the
same config and data) on all folds but one, then prints recall@k / MAP@25 of the untrained model and of
the model after each round, searching the whole catalog.

    .venv/bin/python bench/retrieval.py --catalog ../shared/data/curriculum --fold 0 --out artifacts/bench/cur
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edurank.artifacts import MANIFEST, read_manifest
from edurank.retriever.catalog import load_catalog
from edurank.training.config import RetrieverConfig
from edurank.training.retriever import train_retriever

COLUMNS = ("recall@1", "recall@5", "recall@10", "recall@20", "recall@25", "recall@50", "recall@100", "mean_recall@50",
           "map@25")


def finished_run(out: Path, config: RetrieverConfig, data_hash: str) -> dict[str, Any] | None:
    """The manifest of a published version trained with this exact config on this exact data, if any."""
    wanted = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    for manifest_path in sorted(out.glob(f"*/{MANIFEST}"), reverse=True):
        manifest = read_manifest(manifest_path.parent)
        if manifest["params"] == wanted and manifest["data"].get("hash") == data_hash:
            return manifest
    return None


def rows(history: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The untrained row and the last epoch of each round."""
    last: dict[int, dict[str, Any]] = {}
    for entry in history:
        last[entry["round"]] = entry
    return [("untrained" if r < 0 else f"round {r} ({'in-batch' if r == 0 else 'hard negatives'})", e)
            for r, e in sorted(last.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--show", type=Path, default=None, help="only print the table of this trained version")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hard-negative-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--freeze-layers", type=int, default=0)
    parser.add_argument("--margin", type=float, default=0.95)
    parser.add_argument("--symmetric", action="store_true")
    parser.add_argument("--cluster-size", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    catalog = load_catalog(args.catalog)
    config = RetrieverConfig(rounds=args.rounds, epochs=args.epochs, hard_negative_epochs=args.hard_negative_epochs,
                             learning_rate=args.lr, batch_size=args.batch_size, max_tokens=args.max_tokens,
                             freeze_layers=args.freeze_layers, margin=args.margin, symmetric=args.symmetric,
                             cluster_size=args.cluster_size, folds=args.folds, fold=args.fold)
    manifest = read_manifest(args.show) if args.show else finished_run(args.out, config, catalog.data_hash)
    if manifest is None:
        manifest = read_manifest(train_retriever(catalog, args.out, config))
    else:
        print(f"reusing {args.show or args.out / manifest['version']}: {manifest['params']}")
    print(f"catalog {args.catalog}: fold {args.fold} of {args.folds} held out "
          f"({manifest['data']['held_out_topics']} topics), {len(catalog.content)} items searched; "
          f"trained in {manifest['seconds']['train'] / 60:.1f} min")
    present = [c for c in COLUMNS if c in manifest["metrics"]["history"][0]]
    print(f"{'model':<28}" + "".join(f"{c:>15}" for c in present))
    for label, entry in rows(manifest["metrics"]["history"]):
        print(f"{label:<28}" + "".join(f"{entry[c]:>15.3f}" for c in present))


if __name__ == "__main__":
    main()
