"""Exporting the essay scorer: the fast path's frozen encoder (windows -> layer means) and each fine-tuned fold
(windows -> trait scores) as ONNX graphs, regressors and blend as they are, checked by MCRMSE on a slice of
scored essays under both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from edurank.artifacts import hash_files
from edurank.backends.base import warm_up
from edurank.backends.config import ExportConfig
from edurank.backends.export import Source, data_file, publish_export, refuse, side_by_side, spread_rows
from edurank.essays.data import ID, TEXT, TRAITS, load_essays, scores
from edurank.essays.evaluation import mcrmse
from edurank.essays.scorer import EssayScorer


def agreement(source: EssayScorer, exported: EssayScorer, essays: pl.DataFrame) -> dict[str, Any]:
    """MCRMSE of each backend's blended scores on the essays, the largest score difference, essays per
    second of each."""
    texts, truth = essays[TEXT].to_list(), scores(essays)
    warm_up(source, exported)
    reference, predicted, speed = side_by_side(lambda: source.score(texts), lambda: exported.score(texts), len(texts))
    torch_mcrmse, export_mcrmse = mcrmse(truth, reference), mcrmse(truth, predicted)
    return {"essays": len(texts), "torch_mcrmse": round(torch_mcrmse, 5), "mcrmse": round(export_mcrmse, 5),
            "mcrmse_delta": round(export_mcrmse - torch_mcrmse, 5),
            "max_score_difference": round(float(np.abs(reference - predicted).max()), 4), **speed}


def export_essays(model: str | Path, data: Path, out: Path, config: ExportConfig) -> Path:
    """Export, check on a slice of the scored essays in `data`, publish `<out>/<version>/`."""
    essays = load_essays(data_file(data, "an essay scorer export is checked on scored essays; give their CSV "
                                         f"({ID}, {TEXT}, {', '.join(TRAITS)})"))
    source = EssayScorer.load(model)

    def write(directory: Path) -> None:
        source.save(directory, config.backend)

    def check(directory: Path) -> dict[str, Any]:
        metrics = agreement(source, EssayScorer.load(directory, config.backend), spread_rows(essays,
                                                                                           config.check_items))
        refuse(not metrics["mcrmse_delta"] <= config.max_metric_delta, f"--backend {config.backend}: MCRMSE "
               f"{metrics['mcrmse']} is {metrics['mcrmse_delta']} above torch's, more than --max-metric-delta "
               f"{config.max_metric_delta}")
        return metrics

    return publish_export(Source.published(source), out,
                          config, hash_files([data]), write, check)
