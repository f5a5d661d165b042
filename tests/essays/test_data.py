from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edurank.errors import InputError
from edurank.essays.data import load_essays, round_scores, scores
from tests.conftest import essay_rows, write_essays


def test_loads_scores_in_trait_order(tmp_path: Path) -> None:
    rows = essay_rows(3)
    frame = load_essays(write_essays(tmp_path / "e.csv", rows))
    assert scores(frame).shape == (3, 6)
    assert scores(frame)[1, 5] == rows[1]["conventions"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda rows: rows[1].update(grammar="5.5"), "row 2, column 'grammar': '5.5' is not a score"),
    (lambda rows: rows[2].update(syntax="good"), "row 3, column 'syntax'"),
    (lambda rows: rows[0].update(full_text="   "), "row 1, column 'full_text': empty essay"),
    (lambda rows: rows[2].update(text_id=rows[0]["text_id"]), "row 3, column 'text_id': duplicate id"),
    (lambda rows: [row.pop("cohesion") for row in rows], "missing column(s) cohesion"),
])
def test_bad_files_name_row_and_column(tmp_path: Path, change, message: str) -> None:
    rows = [{k: str(v) for k, v in row.items()} for row in essay_rows(3)]
    change(rows)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_essays(write_essays(tmp_path / "e.csv", rows))


def test_unscored_files_need_only_id_and_text(tmp_path: Path) -> None:
    path = write_essays(tmp_path / "e.csv", [{"text_id": "a", "full_text": "An essay."}])
    assert load_essays(path, scored=False).height == 1
    with pytest.raises(InputError, match="missing column"):
        load_essays(path)


def test_rounding_goes_to_half_points_within_the_scale() -> None:
    assert round_scores(np.array([[0.2, 1.26, 2.74, 3.2, 4.9, 6.0]])).tolist() == [[1.0, 1.5, 2.5, 3.0, 5.0, 5.0]]
