from __future__ import annotations

import time

import pytest

from edurank.retriever.readable import (
    UNTITLED,
    content_words,
    math_spans,
    plain_text,
    readable,
    readable_title,
    shared_words,
    snippet,
)


@pytest.mark.parametrize(("latex", "plain"), [
    ("Simplify \\( \\frac{6}{8} \\)", "Simplify 6/8"),
    ("\\( \\frac{3 x+1}{3} \\div \\frac{x}{2} \\)", "(3 x+1)/3 ÷ x/2"),
    ("\\[ 3 \\times 2+4-5 \\]", "3 × 2+4-5"),
    ("\\( 40^{\\circ} \\) and \\( x^{2} \\), the \\( 3^{\\text{rd}} \\) term", "40° and x², the 3rd term"),
    ("\\( \\sqrt{75}=n \\sqrt{3} \\)", "√75=n √3"),
    ("Length \\( 7 \\mathrm{~cm} \\) ?", "Length 7 cm?"),
    ("What is \\( 30 \\% \\) of 5? ![A bar cut in ten parts]()", "What is 30% of 5? (picture)"),
    ("$x^2$ costs \\$5", "x² costs $5"),
    ("\\begin{tabular}{|l|l|} Position & 1 \\\\ \\hline Term & \\( \\bigstar \\) \\end{tabular} Tom & Jo",
     "Position 1 Term ★ Tom & Jo"),
])
def test_plain_text_renders_latex_as_a_reader_would_write_it(latex: str, plain: str) -> None:
    assert plain_text(latex) == plain


@pytest.mark.parametrize(("title", "expected"), [
    ("Equivalent fractions", True), ("Vereinfache den Term", True), ("分数", True), ("STEP \\( 3 \\)", True),
    ("\\[", False), ("\\(", False), ("\\begin{tabular}{llll}", False), ("\\( \\frac{x}{y} + z \\)", False),
    ("![A triangle with one angle of 40 degrees", False), ("12", False), ("", False), (None, False),
])
def test_a_title_is_readable_when_words_remain_outside_its_math(title: str | None, expected: bool) -> None:
    assert readable(title) is expected


def test_a_latex_fragment_title_gives_way_to_the_first_readable_line() -> None:
    text = "\\[\n0.095643\n\\]\n\nWhat is this number rounded to 1 significant figure?\nOptions: (A) 0 (B) 0.1"
    assert readable_title("\\[", None, text) == "What is this number rounded to 1 significant figure?"
    long = "\\(\nx\n\\)\nA descending linear sequence has a constant difference of 17 and the 3rd term is 488."
    assert readable_title("\\(", None, long) == "A descending linear sequence has a constant difference of 17 and the…"
    assert readable_title("\\[", "Halve both numbers.", text) == "Halve both numbers."
    assert readable_title("\\( 6-(-8)= \\)", None, "\\( 6-(-8)= \\)\nOptions: (A) 14 (B) -2") == "6-(-8)="  # a formula


@pytest.mark.parametrize(("title", "description", "text"), [
    ("\\[", None, None), ("\\(", "\\[", "\\( \\)\n$$ $$"), (None, None, None), ("", "", ""), ("  ", None, "$$ $$")])
def test_with_no_readable_words_anywhere_the_title_is_untitled(title: str | None, description: str | None,
                                                               text: str | None) -> None:
    assert readable_title(title, description, text) == UNTITLED


@pytest.mark.parametrize("text", [
    "$" + "_" * 1999, "$" + "_" * 5999,  # an inline $ never closed
    "\\(" * 3000, "\\[" * 3000, "$$x" * 700, "\\(\n" * 700,  # openers without closers
    "![" * 3000 + "]", "\\begin{a}" * 700, "$x_" * 700,
])
def test_unclosed_spans_take_linear_time(text: str) -> None:
    started = time.perf_counter()
    readable_title(text, text, text)
    plain_text(text)
    assert time.perf_counter() - started < 0.5  # a regex retrying each opener to the end took 1-1.5 s here


@pytest.mark.parametrize(("text", "spans"), [
    ("costs $5 and $x^2$ here", [(13, 18, "x^2")]),  # a price is no math: the next $ opens it
    ("$a_1$ \\( b \\) \\( $$ c $$ \\]", [(0, 5, "a_1"), (6, 13, " b "), (17, 24, " c ")]),
    ("$x^2\nnext line$ \\[", []),  # inline math stays within a line; an opener without a closer is text
    ("$$$x$$", [(0, 6, "$x")]),
])
def test_math_spans_close_at_their_first_closer(text: str, spans: list[tuple[int, int, str]]) -> None:
    assert list(math_spans(text)) == spans


def test_pictures_and_environments_read_as_a_whole() -> None:
    assert plain_text("![a ](b) and ![unclosed") == "(picture) and (picture)"
    assert plain_text("\\begin{array} a & b \\end{array} & c") == "a b & c"


def test_a_title_cut_mid_word_from_the_text_ends_at_a_word() -> None:
    text = "The table below counts the spots on \\( 25 \\) ladybirds. Find the mean."
    title = text[:text.index("irds")]
    assert readable_title(title, None, text) == "The table below counts the spots on 25…"
    assert snippet(readable_title(title, None, text), None, text) == "…ladybirds. Find the mean."


def test_a_snippet_leaves_out_the_title_and_is_cut_at_a_word() -> None:
    text = "Solve the equation:\n\\( 2 x+3=7 \\)\nOptions: (A) 2 (B) 5"
    assert snippet("Solve the equation:", None, text) == "2 x+3=7 Options: (A) 2 (B) 5"
    long = "word " * 60
    cut = snippet("Title", long, "ignored: the description comes first")
    assert cut is not None and len(cut) <= 160 and cut.endswith("word…")
    assert snippet("Fractions", "Fractions", None) is None and snippet("Fractions") is None


def test_shared_words_are_content_words_in_the_topics_form() -> None:
    topic = "Simplify fractions | Mathematics > Fractions | Write a fraction in its simplest form."
    item = "Simplifying a fraction: divide numerator and denominator by \\( \\frac{2}{2} \\)."
    assert shared_words(content_words(topic), item) == ["simplify", "fractions"]
    assert shared_words(content_words(topic), item, limit=1) == ["simplify"]
    assert "frac" not in content_words(item).values() and "with" not in content_words("with fractions").values()
    assert shared_words(content_words("Photosynthesis"), item) == []
