"""Exporting a cross-encoder: the whole pair scorer (encoder, within-text layers, segment-cosine head) as one
ONNX graph beside the source's tokenizer and `reranker.json`, checked by how alike both backends rank the
same candidates of the same topics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from edurank.backends.base import warm_up
from edurank.backends.config import ExportConfig
from edurank.backends.export import Source, publish_export, refuse, side_by_side
from edurank.backends.onnx import ONNX_FILE, export_graph, sample_features
from edurank.reranker.cross_encoder.model import Parts, Reranker
from edurank.retriever.catalog import Catalog
from edurank.retriever.texts import content_parts, topic_parts

CANDIDATES = 16  # per topic in the check, about what `/recommend` reranks per query


def check_lists(catalog: Catalog, pairs: int, seed: int = 0) -> list[list[tuple[Parts, Parts, int]]]:
    """Candidate lists of `CANDIDATES` items for up to `pairs / CANDIDATES` topics spread over those with
    content: each topic's gold items first, then others drawn at random (seeded), ranked in that order."""
    topics = catalog.topics_with_content()
    step = max(len(topics) * CANDIDATES // pairs, 1)
    chosen = topics[::step].head(max(pairs // CANDIDATES, 1))
    index = {cid: row for row, cid in enumerate(catalog.content["id"].to_list())}
    contents = content_parts(catalog.content)
    rng = np.random.default_rng(seed)
    lists = []
    for topic, parts in zip(chosen["id"].to_list(), topic_parts(chosen), strict=True):
        gold = [index[c] for c in sorted(catalog.gold[topic])][:CANDIDATES]
        others = [int(r) for r in rng.permutation(len(contents)) if int(r) not in gold][:CANDIDATES - len(gold)]
        lists.append([(parts, contents[row], rank) for rank, row in enumerate(gold + others, start=1)])
    return lists


def agreement(source: Reranker, exported: Reranker, lists: list[list[tuple[Parts, Parts, int]]]) -> dict[str, Any]:
    """Per topic, the Spearman correlation of the two backends' logits over its candidates and whether their
    best candidate is the same; the largest logit difference; pairs per second of each (`items_per_s`)."""
    items = [item for candidates in lists for item in candidates]
    warm_up(source, exported)
    reference, logits, speed = side_by_side(lambda: source.scores(items), lambda: exported.scores(items), len(items))
    bounds = np.cumsum([len(c) for c in lists])[:-1]
    pairs = list(zip(np.split(reference, bounds), np.split(logits, bounds), strict=True))
    spearman = [float(spearmanr(a, b).statistic) for a, b in pairs]
    return {"topics": len(lists), "pairs": len(items), "spearman_mean": round(float(np.mean(spearman)), 4),
            "spearman_min": round(float(np.min(spearman)), 4),
            "top1_agreement": round(float(np.mean([a.argmax() == b.argmax() for a, b in pairs])), 4),
            "max_logit_difference": round(float(np.abs(reference - logits).max()), 4), **speed}


def export_reranker(model: str | Path, catalog: Catalog, out: Path, config: ExportConfig) -> Path:
    """Export, check on candidate lists of `catalog`'s topics, publish `<out>/<version>/`; returns that dir."""
    source = Reranker.load(model)

    def write(directory: Path) -> None:
        export_graph(source.model, sample_features(source.tokenizer, pairs=True), directory / ONNX_FILE,
                     config.backend, call=lambda scorer, **inputs: scorer(**inputs), output_axes={0: "batch"})
        source.model.encoder.config.save_pretrained(str(directory))
        source.save_settings(directory)

    def check(directory: Path) -> dict[str, Any]:
        exported = Reranker.load(directory, source.format, config.backend)
        metrics = agreement(source, exported, check_lists(catalog, config.check_items))
        refuse(not metrics["spearman_mean"] >= config.min_rank_agreement, f"--backend {config.backend}: mean rank "
               f"agreement with torch {metrics['spearman_mean']} is below --min-rank-agreement "
               f"{config.min_rank_agreement}")
        return metrics

    return publish_export(Source(Reranker.KIND, source.path, source.fingerprint, source.manifest), out, config,
                          catalog.data_hash, write, check)
