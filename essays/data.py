"""Reading essay CSVs (the ELLIPSE / Feedback Prize 3 layout): `text_id, full_text` plus the six trait
columns when the file is for training or evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from edurank.errors import InputError

TRAITS = ("cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions")
LOW, HIGH = 1.0, 5.0
ID, TEXT = "text_id", "full_text"


def load_essays(path: Path, scored: bool = True) -> pl.DataFrame:
    """The essays in `path`, checked: ids unique, text non-empty and, when `scored`, every trait present and
    within [1, 5]. Errors name the file, the column and the first bad row (1-based, header excluded)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        frame = pl.read_csv(path, infer_schema_length=0)  # all strings: we check types ourselves
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as err:
        raise InputError(f"{path}: not a readable CSV ({err})") from err
    required = (ID, TEXT, *TRAITS) if scored else (ID, TEXT)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(frame.columns)})")
    if frame.is_empty():
        raise InputError(f"{path}: no essays")
    text = frame[TEXT].fill_null("")
    blank = text.str.strip_chars().str.len_chars() == 0
    if blank.any():
        raise InputError(f"{path}, row {int(blank.arg_true()[0]) + 1}, column '{TEXT}': empty essay")
    duplicated = ~frame[ID].is_first_distinct()
    if duplicated.any():
        row = int(duplicated.arg_true()[0])
        raise InputError(f"{path}, row {row + 1}, column '{ID}': duplicate id {frame[ID][row]!r}")
    if scored:
        for trait in TRAITS:
            values = frame[trait].str.strip_chars().cast(pl.Float64, strict=False)
            bad = values.is_null() | (values < LOW) | (values > HIGH)
            if bad.any():
                row = int(bad.arg_true()[0])
                raise InputError(f"{path}, row {row + 1}, column '{trait}': {frame[trait][row]!r} is not a score "
                                 f"between {LOW} and {HIGH}")
            frame = frame.with_columns(values.alias(trait))
    return frame


def scores(frame: pl.DataFrame) -> np.ndarray:
    """The (essays, 6) float32 matrix of trait scores, in TRAITS order."""
    return frame.select(TRAITS).to_numpy().astype(np.float32)


def clip_scores(values: np.ndarray) -> np.ndarray:
    return np.clip(values, LOW, HIGH)


def round_scores(values: np.ndarray) -> np.ndarray:
    """To the nearest half point, the scale raters use."""
    return np.round(clip_scores(values) * 2) / 2
