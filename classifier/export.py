"""Exporting the misconception classifier: the trunk and every member as one ONNX graph (the trunk runs once,
the members' logits come out stacked), checked by MAP@3 on a slice of labelled responses under both
backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from edurank.artifacts import hash_files
from edurank.backends.base import warm_up
from edurank.backends.config import ExportConfig
from edurank.backends.export import Source, data_file, publish_export, refuse, side_by_side, spread_rows
from edurank.backends.onnx import ONNX_FILE, export_graph
from edurank.classifier.data import (
    ANSWER,
    CATEGORY,
    EXPLANATION,
    INPUT_COLUMNS,
    LABEL,
    MISCONCEPTION,
    QUESTION,
    QUESTION_TEXT,
    load_responses,
)
from edurank.classifier.evaluation import ranked_labels, single_label_map
from edurank.classifier.predictor import MisconceptionClassifier, Response


def agreement(source: MisconceptionClassifier, exported: MisconceptionClassifier, rows: pl.DataFrame) \
        -> dict[str, Any]:
    """MAP@3 of each backend on the rows, the top-1 agreement and largest probability difference, and
    responses per second of each."""
    responses = [Response(*row) for row in rows.select(QUESTION, QUESTION_TEXT, ANSWER, EXPLANATION).iter_rows()]
    warm_up(source, exported)
    reference, probabilities, speed = side_by_side(lambda: source.probabilities(responses)[0],
                                                   lambda: exported.probabilities(responses)[0], len(responses))
    truth = rows[LABEL].to_list()
    torch_map = single_label_map(truth, ranked_labels(reference, source.labels))
    export_map = single_label_map(truth, ranked_labels(probabilities, exported.labels))
    return {"responses": len(responses), "torch_map3": round(torch_map, 5), "map3": round(export_map, 5),
            "map3_delta": round(export_map - torch_map, 5),
            "top1_agreement": round(float(np.mean(reference.argmax(1) == probabilities.argmax(1))), 4),
            "max_probability_difference": round(float(np.abs(reference - probabilities).max()), 4), **speed}


def export_classifier(model: str | Path, data: Path, out: Path, config: ExportConfig) -> Path:
    """Export, check on a slice of the labelled responses in `data`, publish `<out>/<version>/`."""
    frame = load_responses(data_file(data, "a classifier export is checked on labelled responses; give their CSV "
                                           f"({', '.join(INPUT_COLUMNS)}, {CATEGORY}, {MISCONCEPTION})"))
    source = MisconceptionClassifier.load(model)
    ensemble = source.torch_ensemble

    def write(directory: Path) -> None:
        modules = torch.nn.ModuleList([ensemble.trunk, *ensemble.members])  # what the exporter traces
        sample = {k: v for k, v in ensemble.tokenize(["an example", "a longer example prompt"]).items()
                  if k in ("input_ids", "attention_mask")}
        export_graph(modules, sample, directory / ONNX_FILE, config.backend,
                     call=lambda _, **inputs: ensemble.forward(**inputs), output_axes={1: "batch"})
        ensemble.tokenizer.save_pretrained(str(directory))
        source.save_book(directory)

    def check(directory: Path) -> dict[str, Any]:
        exported = MisconceptionClassifier.load(directory, config.backend)
        metrics = agreement(source, exported, spread_rows(frame, config.check_items))
        refuse(not metrics["map3_delta"] >= -config.max_metric_delta, f"--backend {config.backend}: MAP@3 "
               f"{metrics['map3']} is {-metrics['map3_delta']} below torch's, more than --max-metric-delta "
               f"{config.max_metric_delta}")
        return metrics

    return publish_export(Source.published(source),
                          out, config, hash_files([data]), write, check)
