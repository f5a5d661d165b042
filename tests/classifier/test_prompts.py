from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from edurank.classifier.data import load_responses
from edurank.classifier.evaluation import single_label_map
from edurank.classifier.prompts import QuestionBook, build_prompt
from edurank.errors import InputError

ROWS = [
    # question 1: "4" is right (its rows are True_*), "5" is wrong
    ("1", "What is 2+2?", "4", "two and two make four", "True_Correct", "NA"),
    ("1", "What is 2+2?", "4", "i guessed", "True_Neither", "NA"),
    ("1", "What is 2+2?", "5", "you add one more", "False_Misconception", "Adding_extra"),
    ("1", "What is 2+2?", "5", "not sure", "False_Neither", "NA"),
    ("2", "Half of 10?", "5", "10 split in two", "True_Correct", "NA"),
]


def write_rows(path: Path, rows: list[tuple[str, ...]]) -> Path:
    columns = ("QuestionId", "QuestionText", "MC_Answer", "StudentExplanation", "Category", "Misconception")
    frame = pl.DataFrame([dict(zip(columns, row, strict=True)) for row in rows])
    frame.with_row_index("row_id").write_csv(path)
    return path


def test_book_derives_correct_options_misconceptions_and_labels(tmp_path: Path) -> None:
    frame = load_responses(write_rows(tmp_path / "r.csv", ROWS))
    assert frame["label"].to_list()[2] == "False_Misconception:Adding_extra"
    book = QuestionBook.fit(frame)
    facts = book.questions["1"]
    assert facts.correct == "4" and set(facts.answers) == {"4", "5"} and facts.misconceptions == ["Adding_extra"]
    assert book.correctness("1", "5") is False and book.correctness("1", "7") is None
    assert book.correctness("9", "4") is None
    assert QuestionBook.from_dict(book.to_dict()) == book


def test_prompt_puts_the_student_first_and_works_for_unseen_questions(tmp_path: Path) -> None:
    book = QuestionBook.fit(load_responses(write_rows(tmp_path / "r.csv", ROWS)))
    prompt = build_prompt(book, "1", "What is 2+2?", "5", " you add one more ")
    assert prompt.startswith("Answer: 5 (incorrect).\nExplanation: you add one more\n")
    assert "Known misconceptions: Adding_extra." in prompt
    unseen = build_prompt(book, "77", "Name a prime.", "9", "it is odd")
    assert "unknown correctness" in unseen and "Options" not in unseen


def test_bad_category_names_row_and_column(tmp_path: Path) -> None:
    rows = [*ROWS[:2], ("1", "What is 2+2?", "4", "x", "Maybe_Correct", "NA")]
    with pytest.raises(InputError, match="row 3, column 'Category': 'Maybe_Correct'"):
        load_responses(write_rows(tmp_path / "r.csv", rows))


def test_map_at_3_by_hand() -> None:
    truth = ["a", "b", "c", "d"]
    ranked = [["a", "x", "y"], ["x", "b", "y"], ["x", "y", "c"], ["x", "y", "z", "d"]]
    assert single_label_map(truth, ranked) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)
