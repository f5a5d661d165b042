"""What a curator reads of a content item: a readable title, a short snippet, and the content words two texts
share (the ranker's reasons name them).

Catalog texts carry LaTeX (`\\( \\frac{2}{x} \\)`) and Markdown pictures, and some titles are bare LaTeX
fragments (`\\[`): such a title is replaced by the first readable words of the description or text, and every
shown text has its LaTeX turned into plain text (`\\frac{a}{b}` -> a/b, `\\times` -> ×). Light on purpose (no
tokenizer), so the answer path and the ranker's reasons import it cheaply. Spans that open and must close (math,
pictures, environments) are found by a scan over the closers' positions, linear in the text: a regex with a lazy
`.*?` retries each unclosed opener up to the end, quadratic time on a text of many (`$___...`, `\\(\\(...`).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator

TITLE_WORDS = 12  # of a description or text, when the stored title is not readable
SNIPPET_CHARS = 160
SHARED_WORDS = 3  # content words named per shared-words reason
PICTURED = "(picture)"  # what a picture's Markdown reads as
UNTITLED = "(untitled)"  # the title of an item whose title and texts hold no readable words

# math: \( \), \[ \], $$ $$, and $ $ within a line around a LaTeX mark (\ ^ _ {), so that "$5 and $7" is none
MATH_OPENER = re.compile(r"\\\(|\\\[|\$\$|(?<![\\$])\$")
MATH_CLOSER = {"\\(": r"\\\)", "\\[": r"\\\]", "$$": r"\$\$", "$": r"[$\n]"}
LATEX_MARK = re.compile(r"[\\^_{]")
PICTURE_OPENER = re.compile(r"!\[")  # a Markdown picture ![...](...), or one a cut title left open to its end
BEGIN = re.compile(r"\\begin\s*\{(\w+)\}")
END = re.compile(r"\\end\s*\{(\w+)\}")
MARKUP = re.compile(r"[\\$^{~]|!\[")  # what plain text lacks
DELIMITER = re.compile(r"\\[()\[\]]|\${1,2}")
COMMAND = re.compile(r"\\[a-zA-Z]+\*?")
LETTERS = re.compile(r"[^\W\d_]{3,}")  # a run of three letters: a word, not a variable
CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]")  # a syllable or ideogram is a word on its own
SYMBOLS = {
    "times": "×", "div": "÷", "cdot": "·", "pm": "±", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠",
    "ne": "≠", "approx": "≈", "equiv": "≡", "pi": "π", "theta": "θ", "omega": "ω", "alpha": "α", "beta": "β",
    "Delta": "Δ", "degree": "°", "circ": "°", "infty": "∞", "rightarrow": "→", "longrightarrow": "→",
    "Rightarrow": "⇒", "Leftrightarrow": "⇔", "ldots": "…", "cdots": "…", "dots": "…", "bigstar": "★",
    "star": "★", "square": "□", "triangle": "△", "bigcirc": "○", "bullet": "•", "pounds": "£", "cup": "∪",
    "cap": "∩", "prime": "′", "angle": "∠", "sin": "sin", "cos": "cos", "tan": "tan", "log": "log",
    "quad": " ", "qquad": " ", "space": " ", "hline": " "}
ESCAPES = {"%": "%", "$": "\x03", "&": "&", "_": "_", "#": "#", "{": "\x01", "}": "\x02", ",": " ", ";": " ",
           ":": " ", "!": "", " ": " ", "\\": " "}  # \{ \} \$ are kept apart from grouping braces and delimiters
KEPT_APART = str.maketrans("\x01\x02\x03", "{}$")
KEPT = ("mathrm|text|textbf|textit|mathbf|mathit|boldsymbol|operatorname|underline|overline|fbox|mbox|hat|dot|bar"
        "|vec|emph")  # commands whose argument is read as it is
SUPERSCRIPT = str.maketrans("0123456789+-n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻ⁿ")
STOPWORDS = frozenset("""
about above after also answer because been before being below between both correct could does each find from
following have here into just more most much must only option options other over same should show some such than
that their them then there these they this those under using very what when where which while will with would
your value
para como cual cuál cuáles este esta estos estas entre sobre desde tiene tienen porque donde cuando respuesta
correcta qué cómo
eine einer einen einem eines nicht sind wird werden dass oder auch wenn dann durch über welche welcher richtige
antwort
dans pour avec sont cette elle leur plus quel quelle réponse
""".split())


def plain_text(text: str | None) -> str:
    """The text as a reader sees it: LaTeX commands rendered or dropped, math delimiters, braces and pictures'
    Markdown gone ("(picture)" stands for a picture), whitespace collapsed."""
    if not text:
        return ""
    if not MARKUP.search(text):
        return re.sub(r"\s+", " ", text).strip()
    text = whole_text(text)
    text = sub_spans(text, math_spans(text), lambda inside: f" {inside.replace('&', ' ')} ")
    text = re.sub(r"\^\s*\{?\s*\\(?:circ|degree)\s*\}?", "°", text)
    text = re.sub(r"\\(?:color|hspace|vspace)\s*\{[^{}]*\}", " ", text)
    text = re.sub(r"\\begin\s*\{(?:tabular|array)\}\s*\{[^{}]*\}", " ", text)  # and its column layout
    text = re.sub(r"\\(?:begin|end)\s*\{[^{}]*\}", " ", text)
    text = re.sub(r"\\([%$&_#{},;:! \\])", lambda m: ESCAPES[m.group(1)], text)
    text = re.sub(r"\\([a-zA-Z]+)", lambda m: SYMBOLS.get(m.group(1), m.group()), text)
    for _ in range(8):  # innermost groups first, until nothing nested is left
        before = text
        text = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}",
                      lambda m: f"{grouped(m.group(1))}/{grouped(m.group(2))}", text)
        text = re.sub(r"\\sqrt\s*\{([^{}]*)\}", lambda m: "√" + grouped(m.group(1)), text)
        text = re.sub(rf"\\(?:{KEPT})\s*\{{([^{{}}]*)\}}", r"\1", text)
        text = re.sub(r"\^\s*\{([^{}]*)\}", lambda m: superscript(m.group(1)), text)
        if text == before:
            break
    text = re.sub(r"\^(\w)", lambda m: superscript(m.group(1)), text)
    text = re.sub(r"\\(left|right)\b", "", text)
    text = COMMAND.sub(" ", text)  # what is left has no plain form
    text = DELIMITER.sub(" ", text).replace("{", "").replace("}", "").replace("~", " ")
    text = re.sub(r"\s+", " ", text.translate(KEPT_APART))
    return re.sub(r"\s+([?.!,;:)%])", r"\1", text).replace("( ", "(").strip()


def whole_text(text: str) -> str:
    """What spans lines read as a whole: pictures (their descriptions may span lines) and the column marks of
    tables and alignments."""
    text = sub_spans(text, picture_spans(text), lambda _: f" {PICTURED} ")
    return sub_spans(text, environment_spans(text), lambda inside: inside.replace("&", " "))


Span = tuple[int, int, str]  # start, end, and what a replacement reads: the inside (math) or the whole span


def positions(text: str, pattern: str) -> list[int]:
    """Where `pattern` matches in `text`, overlapping matches included, in order."""
    return [m.start() for m in re.finditer(f"(?={pattern})", text)]


def first_from(found: list[int], at: int) -> int:
    """The first of the sorted `found` at or after `at`; -1: none."""
    i = bisect_left(found, at)
    return found[i] if i < len(found) else -1


def sub_spans(text: str, spans: Iterator[Span], replace: Callable[[str], str]) -> str:
    """The text with each span (left to right, not overlapping) replaced by `replace` of its third part."""
    parts, last = [], 0
    for start, end, inside in spans:
        parts += [text[last:start], replace(inside)]
        last = end
    return "".join([*parts, text[last:]])


def math_spans(text: str) -> Iterator[Span]:
    """Each math span, left to right, with its inside: the first closer after each opener (an opener with none
    is text); $ ... $ only within a line and around a LaTeX mark."""
    closers = {opener: positions(text, closer) for opener, closer in MATH_CLOSER.items()}
    at = 0
    while (opened := MATH_OPENER.search(text, at)) is not None:
        kind, inside = opened.group(), opened.end()
        close = first_from(closers[kind], inside)
        if close >= 0 and (kind != "$" or text[close] == "$" and LATEX_MARK.search(text, inside, close)):
            at = close + len(kind)
            yield opened.start(), at, text[inside:close]
        else:
            at = opened.start() + 1


def picture_spans(text: str) -> Iterator[Span]:
    """Each Markdown picture `![description](address)`, and one left open to the text's end (no `]` after it)."""
    brackets, parens = positions(text, r"\]"), positions(text, r"\)")
    at = 0
    while (opened := PICTURE_OPENER.search(text, at)) is not None:
        bracket = first_from(brackets, opened.end())
        if bracket < 0:
            end = len(text)
        else:
            paren = first_from(parens, bracket + 2) if text[bracket + 1:bracket + 2] == "(" else -1
            end = paren + 1 if paren >= 0 else -1
        if end >= 0:
            at = end
            yield opened.start(), end, text[opened.start():end]
        else:
            at = opened.start() + 1


def environment_spans(text: str) -> Iterator[Span]:
    """Each LaTeX environment, `\\begin{name}` to the first `\\end{name}` after it, whole."""
    ends: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    for found in END.finditer(text):
        ends[found.group(1)].append((found.start(), found.end()))
    at = 0
    while (opened := BEGIN.search(text, at)) is not None:
        closers = ends[opened.group(1)]
        i = bisect_left(closers, (opened.end(), -1))
        if i < len(closers):
            at = closers[i][1]
            yield opened.start(), at, text[opened.start():at]
        else:
            at = opened.start() + 1


def grouped(part: str) -> str:
    """A fraction's or root's part as plain text: bare when it is one term, else in brackets."""
    part = part.strip()
    return f"({part})" if re.search(r"[\s+\-×÷·±=<>/]", part) else part


def superscript(power: str) -> str:
    power = power.strip()
    if power and all(c in "0123456789+-n" for c in power):
        return power.translate(SUPERSCRIPT)
    if len(power) > 1 and power.isalpha():  # an ordinal's ending: 3^{rd} -> 3rd
        return power
    return f"^{power}" if len(power) == 1 else f"^({power})"


def readable(title: str | None) -> bool:
    """Whether a title reads as words: in plain text, outside its math and pictures, a run of three letters
    (or a CJK character); not only symbols, numbers or LaTeX fragments such as `\\[`."""
    title = sub_spans(title or "", math_spans(title or ""), lambda _: " ")
    words = plain_text(sub_spans(title, picture_spans(title), lambda _: " ")).replace(PICTURED, " ")
    return bool(LETTERS.search(words) or CJK.search(words))


def formula(title: str | None) -> bool:
    """Whether a title is a whole formula (`\\( 6-(-8)= \\)`: in plain text, two letters or digits among three
    characters), which a curator reads, unlike a bare delimiter or a picture."""
    shown = plain_text(sub_spans(title or "", picture_spans(title or ""), lambda _: " "))
    return len(re.findall(r"\w", shown)) >= 2 and len(shown.replace(" ", "")) >= 3


def readable_title(title: str | None, description: str | None = None, text: str | None = None) -> str:
    """The title to show: the stored one in plain text (cut at a word where it was cut mid-word from the text),
    a title that is a whole formula in plain text, or else the first words of the description's or text's
    first readable line; when none of them holds any, what is left of the title in plain text, else UNTITLED
    (never a raw LaTeX fragment, never empty)."""
    if readable(title):
        kept, cut = whole_words(title, text)  # type: ignore[arg-type]
        return plain_text(kept) + ("…" if cut else "")
    if formula(title):
        return plain_text(title)
    for source in (description, text):
        line = first_readable_line(source)
        if line:
            return first_words(plain_text(line))
    for source in (description, text):
        if plain_text(source):
            return first_words(plain_text(source))
    return plain_text(title) or UNTITLED


def snippet(title: str, description: str | None = None, text: str | None = None,
            limit: int = SNIPPET_CHARS) -> str | None:
    """Up to `limit` characters of the description (else the text) in plain text, cut at a word with an
    ellipsis; what the shown `title` (readable_title's) already says of its start is left out. None: nothing
    more to show."""
    body = plain_text(description if description and description.strip() else text)
    head = title.removesuffix("…")
    if head and body.startswith(head) and not body[len(head):len(head) + 1].isalnum():
        body = ("…" if title != head else "") + body[len(head):].lstrip(" .:;,-–—|")
    return cut(body, limit) if body.strip("…") else None


def whole_words(title: str, text: str | None) -> tuple[str, bool]:
    """The title without the partial word it ends in where it was cut from the text's start mid-word, and
    whether it was cut."""
    title = title.strip()
    if text and len(text) > len(title) and text.startswith(title) and title[-1:].isalnum() \
            and text[len(title)].isalnum() and " " in title:
        return title[:title.rfind(" ")], True
    return title, False


def first_readable_line(text: str | None) -> str | None:
    """The first line of the text that reads as words in plain text."""
    if not text:
        return None
    return next((line for line in whole_text(text).splitlines()
                 if LETTERS.search(plain_text(line).replace(PICTURED, " ")) or CJK.search(line)), None)


def first_words(text: str, words: int = TITLE_WORDS) -> str:
    """Its first sentence when that ends within `words` words, else its first `words` words and an ellipsis."""
    tokens = text.split()
    for i, token in enumerate(tokens[:words]):
        if i >= 1 and token[-1] in ".?!":
            return " ".join(tokens[:i + 1])
    return " ".join(tokens[:words]).rstrip(",;:") + ("…" if len(tokens) > words else "")


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    return (head[:head.rfind(" ")] if " " in head else head[:limit - 1]).rstrip(" ,;:") + "…"


def content_words(text: str | None) -> dict[str, str]:
    """The text's content words (letters only, four or more, no common function words) by a crude stem
    (`stem`), in order of first appearance."""
    found: dict[str, str] = {}
    for word in LETTERS.findall(plain_text(text).lower()):
        if len(word) >= 4 and word not in STOPWORDS:
            found.setdefault(stem(word), word)
    return found


def stem(word: str) -> str:
    """Words that agree on this match: a plural's s dropped, then the first six letters (fraction, fractions;
    simplify, simplified)."""
    return (word[:-1] if word.endswith("s") and len(word) > 4 else word)[:6]


def shared_words(topic_words: dict[str, str], item: str | None, limit: int = SHARED_WORDS) -> list[str]:
    """Up to `limit` of the topic's content words (`content_words` of it, worked out once for all its items)
    that the item also has, in the topic's forms and order."""
    theirs = content_words(item)
    return [word for key, word in topic_words.items() if key in theirs][:limit]
