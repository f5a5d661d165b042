"""Why the ranker scored an item as it did, in a curator's words.

An item's SHAP contributions (Ranker.contributions) are summed per group of features that measure one thing
(the dense cosine, its rank, gap, ratio, z-score and position are one "closeness in meaning"); the groups that
moved the score most become up to MAX_REASONS reasons. Each states a fact that holds for the item's feature
values ("no other topic links this item yet" for item_links = 0, "the 4th closest in meaning to the topic among
its 60 candidates"; the words it shares with the topic where its wording counted for it), and one whose group
lowered the score starts with AGAINST. Features that
describe the topic alone (its best cosines, candidate count, length, category, level) are the same for every
item of a list, so they explain no choice between items and give no reason; the raw contributions keep them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edurank.reranker.lightgbm.config import TOPIC_PARTS

MAX_REASONS = 3
SMALLEST = 0.05  # a group moving the log-odds less than this gives no reason
AGAINST = "against: "

REASON_GROUPS: dict[str, tuple[str, ...]] = {
    "meaning": ("dense_score", "dense_rank", "dense_gap", "dense_ratio", "dense_z", "dense_position"),
    "second_meaning": ("companion_score", "companion_gap", "companion_z", "companion_position"),
    "reading": ("cross_logit", "cross_gap", "cross_position"),
    "words": ("lexical_score", "lexical_rank", "lexical_gap", "lexical_z", "lexical_position"),
    "links": ("item_links",),
    "parent": ("parent_links",),
    "siblings": ("sibling_links",),
    "channel": ("channel_links",),
    "neighbours": ("neighbour_best", "neighbour_gap", "neighbour_rank", "neighbour_votes"),
    "like_linked": ("neighbour_item_best", "neighbour_item_weighted", "neighbour_item_gap"),
    "parts": ("part_title", "part_breadcrumbs", "part_description",
              "part_title_gap", "part_breadcrumbs_gap", "part_description_gap"),
    "reverse": ("reverse_gap", "reverse_rank"),
    "language": ("same_language",),
    "kind": ("kind",),
    "length": ("item_chars",),
}
KINDS = {"exercise": "an exercise", "video": "a video", "audio": "an audio recording", "document": "a document",
         "html5": "an interactive item", "slideshow": "a slideshow", "h5p": "an interactive item",
         "topic": "a topic"}


@dataclass(frozen=True)
class Reason:
    group: str  # a REASON_GROUPS key
    features: tuple[str, ...]  # its features the ranker reads
    contribution: float  # their summed SHAP contribution (log-odds): its sign is the reason's direction
    text: str  # what a curator reads


def reasons(row: Mapping[str, Any], contributions: Mapping[str, float], shared: Sequence[str] = (),
            limit: int = MAX_REASONS, smallest: float = SMALLEST) -> list[Reason]:
    """Up to `limit` reasons, largest summed contribution first. `row`: the item's feature values (null:
    missing) and the facts beside them in the feature frame (the topic's parent, channel and language, the
    item's kind and language); `contributions`: each feature's SHAP value; `shared`: the content words the
    topic and the item share, named where the wording counted for the item (else its place by wording)."""
    found = []
    for group, features in REASON_GROUPS.items():
        present = tuple(f for f in features if f in contributions)
        total = sum(contributions[f] for f in present)
        if not present or abs(total) < smallest:
            continue
        statement = sharing(shared) if group == "words" and shared and total > 0 else STATEMENTS[group](row)
        if statement is not None:
            found.append(Reason(group, present, float(total), statement if total > 0 else AGAINST + statement))
    return sorted(found, key=lambda r: -abs(r.contribution))[:limit]


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def known(row: Mapping[str, Any], *names: str) -> list[int] | None:
    """The row's values of these features as integers, or None when one is missing."""
    values = [row.get(name) for name in names]
    if any(v is None or v != v for v in values):  # v != v: NaN
        return None
    return [int(v) for v in values]


def counted(n: int, one: str, many: str, none: str) -> str:
    """`none`, `one` (with 1) or `many` with the count in front, as n calls for."""
    return none if n == 0 else f"1 {one}" if n == 1 else f"{n} {many}"


Statement = Callable[[Mapping[str, Any]], str | None]


def closeness(measure: str, position: str, rank: str | None = None, unranked: str | None = None) -> Statement:
    """A statement of the item's place by one measure (`measure` with `{place}`): among the topic's candidates
    (`position`), else in that measure's search over the catalog (`rank`; null: `unranked`, not found by it)."""
    def place(n: int) -> str:
        return "" if n == 1 else f"{ordinal(n)} "

    def statement(row: Mapping[str, Any]) -> str | None:
        among = known(row, position, "candidates")
        if among is not None:
            return f"{measure.format(place=place(among[0]))} among its {among[1]} candidates"
        if rank is None or rank not in row:
            return None
        found = known(row, rank)
        return f"{measure.format(place=place(found[0]))} in the catalog" if found else unranked
    return statement


def sharing(words: Sequence[str]) -> str:
    quoted = [f"'{word}'" for word in words]
    return f"shares {quoted[0] if len(quoted) == 1 else ', '.join(quoted[:-1]) + ' and ' + quoted[-1]} with the topic"


def links(row: Mapping[str, Any]) -> str | None:
    n = known(row, "item_links")
    return None if n is None else counted(n[0], "other topic links this item", "other topics link this item",
                                          "no other topic links this item yet")


def parent(row: Mapping[str, Any]) -> str | None:
    n = known(row, "parent_links")  # null: a topic without a parent
    return None if n is None else "the topic's parent links it" if n[0] else "the topic's parent does not link it"


def siblings(row: Mapping[str, Any]) -> str | None:
    n = known(row, "sibling_links")
    if n is None or row.get("parent") is None:  # a topic without a parent has no siblings
        return None
    return counted(n[0], "other topic under the same parent links it", "other topics under the same parent link it",
                   "no other topic under the same parent links it")


def channel(row: Mapping[str, Any]) -> str | None:
    n = known(row, "channel_links")
    if n is None or row.get("channel") is None:  # a free-text topic is in no channel
        return None
    return counted(n[0], "other topic of the topic's channel links it",
                   "other topics of the topic's channel link it", "no other topic of the topic's channel links it")


def neighbours(row: Mapping[str, Any]) -> str | None:
    votes = known(row, "neighbour_votes")  # null: no neighbours computed
    if votes is None:
        return None
    if votes[0] == 0:
        return "none of the most similar topics links it"
    nearest = known(row, "neighbour_rank")
    which = ("the most similar topic" if nearest is None or nearest[0] == 1
             else f"the {ordinal(nearest[0])} most similar topic")
    if votes[0] == 1:
        return f"{which} links it"
    return f"{votes[0]} of the most similar topics link it, {which} among them"


def like_linked(row: Mapping[str, Any]) -> str | None:
    best = row.get("neighbour_item_best")  # null: no similar topic links another item
    if best is None or best != best:
        return None
    return f"it reads like an item the most similar topics link (cosine {best:.2f})"


def parts(row: Mapping[str, Any]) -> str | None:
    """The topic part the item is closest to, where any part was embedded alone."""
    found = {name: row.get(f"part_{name}") for name in TOPIC_PARTS}
    scored = {name: value for name, value in found.items() if value is not None and value == value}
    if not scored:
        return None
    name = max(scored, key=lambda n: scored[n])
    return f"it is close in meaning to the topic's {name} alone (cosine {scored[name]:.2f})"


def reverse(row: Mapping[str, Any]) -> str | None:
    rank = known(row, "reverse_rank")  # null: the index holds no topic vectors
    if rank is None:
        return None
    return f"this topic is the {'' if rank[0] == 1 else ordinal(rank[0]) + ' '}closest of all topics to it"


def language(row: Mapping[str, Any]) -> str | None:
    same = known(row, "same_language")  # null: the topic's language is not known
    if same is None:
        return None
    if same[0]:
        return "it is in the topic's language"
    theirs, mine = row.get("item_language"), row.get("language")
    return f"it is in {theirs}, the topic in {mine}" if theirs and mine else "it is in another language than the topic"


def kind(row: Mapping[str, Any]) -> str | None:
    name = row.get("item_kind")
    return None if not name else f"it is {KINDS.get(name, f'a {name} item')}"


def length(row: Mapping[str, Any]) -> str | None:
    chars = known(row, "item_chars")
    return None if chars is None else f"its title and texts run to {chars[0]:,} characters"


STATEMENTS: dict[str, Statement] = {
    "meaning": closeness("the {place}closest in meaning to the topic", "dense_position", "dense_rank",
                         "found by shared wording, not by meaning"),
    "second_meaning": closeness("the {place}closest in meaning by the second encoder", "companion_position"),
    "reading": closeness("the {place}best match when read side by side with the topic", "cross_position"),
    "words": closeness("the {place}closest in wording to the topic", "lexical_position", "lexical_rank",
                       "found by meaning, not by shared wording"),
    "links": links, "parent": parent, "siblings": siblings, "channel": channel, "neighbours": neighbours,
    "like_linked": like_linked, "parts": parts, "reverse": reverse, "language": language, "kind": kind,
    "length": length}
