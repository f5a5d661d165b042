"""Reading MAP-style response CSVs: `row_id, QuestionId, QuestionText, MC_Answer, StudentExplanation` plus
`Category, Misconception` when the file is labelled. The label is `Category:Misconception` (`NA` when the
category names no misconception)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from edurank.errors import InputError

ROW, QUESTION, QUESTION_TEXT, ANSWER, EXPLANATION = "row_id", "QuestionId", "QuestionText", "MC_Answer", \
    "StudentExplanation"
CATEGORY, MISCONCEPTION, LABEL = "Category", "Misconception", "label"
INPUT_COLUMNS = (ROW, QUESTION, QUESTION_TEXT, ANSWER, EXPLANATION)
CATEGORIES = ("True_Correct", "True_Neither", "True_Misconception", "False_Correct", "False_Neither",
              "False_Misconception")
NO_MISCONCEPTION = "NA"


def load_responses(path: Path, labelled: bool = True) -> pl.DataFrame:
    """The rows of `path`, checked, with `QuestionId` as a string and, when `labelled`, a `label` column.
    Errors name the file, the column and the first bad row (1-based, header excluded)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        frame = pl.read_csv(path, infer_schema_length=0)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as err:
        raise InputError(f"{path}: not a readable CSV ({err})") from err
    required = INPUT_COLUMNS + ((CATEGORY, MISCONCEPTION) if labelled else ())
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(frame.columns)})")
    if frame.is_empty():
        raise InputError(f"{path}: no rows")
    for column in (QUESTION, QUESTION_TEXT, ANSWER):
        blank = frame[column].fill_null("").str.strip_chars() == ""
        if blank.any():
            raise InputError(f"{path}, row {int(blank.arg_true()[0]) + 1}, column '{column}': empty")
    frame = frame.with_columns(pl.col(EXPLANATION).fill_null(""))
    if labelled:
        bad = ~frame[CATEGORY].is_in(CATEGORIES)
        if bad.any():
            row = int(bad.arg_true()[0])
            raise InputError(f"{path}, row {row + 1}, column '{CATEGORY}': {frame[CATEGORY][row]!r} is not one of "
                             f"{', '.join(CATEGORIES)}")
        misconception = pl.col(MISCONCEPTION).fill_null(NO_MISCONCEPTION).str.strip_chars()
        frame = frame.with_columns(misconception.replace("", NO_MISCONCEPTION).alias(MISCONCEPTION))
        frame = frame.with_columns((pl.col(CATEGORY) + ":" + pl.col(MISCONCEPTION)).alias(LABEL))
    return frame
