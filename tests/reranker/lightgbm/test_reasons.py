from __future__ import annotations

from typing import Any

import pytest

from edurank.reranker.lightgbm.config import FEATURE_GROUPS
from edurank.reranker.lightgbm.reasons import AGAINST, REASON_GROUPS, ordinal, reasons

# the features that describe the topic alone: the same for every item of a list, they give no reason
TOPIC_ONLY = ("dense_max", "lexical_max", "candidates", "category", "level", "topic_chars")

ROW: dict[str, Any] = {  # a catalog topic's candidate, as the feature frame holds it
    "dense_score": 0.7, "dense_rank": 2, "dense_position": 2, "candidates": 40, "lexical_position": 5,
    "lexical_rank": 5, "item_links": 0, "parent_links": 1, "sibling_links": 2, "channel_links": 1,
    "neighbour_votes": 3, "neighbour_rank": 2, "reverse_rank": 4, "same_language": 0, "item_language": "es",
    "language": "en", "item_kind": "video", "item_chars": 1200, "parent": "p", "channel": "ch"}


def one(group: str, contribution: float, row: dict[str, Any] | None = None, shared: tuple[str, ...] = ()) -> str:
    """The text of the one reason a single group's contribution gives."""
    [reason] = reasons(ROW if row is None else row, dict.fromkeys(REASON_GROUPS[group][:1], contribution), shared)
    assert reason.group == group and reason.contribution == contribution
    return reason.text


def test_every_feature_is_in_one_reason_group_or_describes_the_topic() -> None:
    grouped = [f for features in REASON_GROUPS.values() for f in features] + list(TOPIC_ONLY)
    assert sorted(grouped) == sorted(f for features in FEATURE_GROUPS.values() for f in features)


@pytest.mark.parametrize(("group", "row", "text"), [
    ("links", {"item_links": 0}, "no other topic links this item yet"),
    ("links", {"item_links": 1}, "1 other topic links this item"),
    ("links", {"item_links": 7}, "7 other topics link this item"),
    ("neighbours", {"neighbour_votes": 0, "neighbour_rank": None}, "none of the most similar topics links it"),
    ("neighbours", {"neighbour_votes": 1, "neighbour_rank": 1}, "the most similar topic links it"),
    ("neighbours", {}, "3 of the most similar topics link it, the 2nd most similar topic among them"),
    ("parent", {}, "the topic's parent links it"),
    ("parent", {"parent_links": 0}, "the topic's parent does not link it"),
    ("siblings", {}, "2 other topics under the same parent link it"),
    ("channel", {}, "1 other topic of the topic's channel links it"),
    ("reverse", {"reverse_rank": 1}, "this topic is the closest of all topics to it"),
    ("reverse", {}, "this topic is the 4th closest of all topics to it"),
    ("meaning", {}, "the 2nd closest in meaning to the topic among its 40 candidates"),
    ("meaning", {"dense_position": 1}, "the closest in meaning to the topic among its 40 candidates"),
    ("meaning", {"dense_position": None, "candidates": None}, "the 2nd closest in meaning to the topic in the catalog"),
    ("meaning", {"dense_position": None, "dense_rank": None}, "found by shared wording, not by meaning"),
    ("words", {}, "the 5th closest in wording to the topic among its 40 candidates"),
    ("language", {}, "it is in es, the topic in en"),
    ("language", {"same_language": 1}, "it is in the topic's language"),
    ("kind", {}, "it is a video"),
    ("kind", {"item_kind": "html5"}, "it is an interactive item"),
    ("length", {}, "its title and texts run to 1,200 characters"),
])
def test_each_reason_states_what_the_value_is(group: str, row: dict[str, Any], text: str) -> None:
    assert one(group, 1.0, {**ROW, **row}) == text
    assert one(group, -1.0, {**ROW, **row}) == AGAINST + text


def test_shared_words_are_named_only_where_the_wording_counted_for_the_item() -> None:
    assert one("words", 0.4, shared=("simplify", "fraction")) == "shares 'simplify' and 'fraction' with the topic"
    assert one("words", 0.4, shared=("a", "b", "c")) == "shares 'a', 'b' and 'c' with the topic"
    assert one("words", -0.4, shared=("simplify",)) == AGAINST + "the 5th closest in wording to the topic among its " \
                                                                 "40 candidates"


def test_a_topic_without_a_place_in_the_catalog_gives_no_tree_reasons() -> None:
    free = {**ROW, "parent": None, "channel": None, "parent_links": None, "sibling_links": 0, "channel_links": 0,
            "neighbour_votes": None, "reverse_rank": None, "same_language": None}
    contributions = {f: 1.0 for f in ("parent_links", "sibling_links", "channel_links", "neighbour_votes",
                                      "reverse_rank", "same_language")}
    assert reasons(free, contributions) == []


def test_groups_are_summed_ranked_and_small_ones_left_out() -> None:
    contributions = {"dense_score": 0.9, "dense_gap": -0.2, "dense_z": 0.1, "item_links": -1.0, "kind": 0.3,
                     "item_chars": 0.04, "dense_max": 5.0, "reverse_rank": 0.2, "same_language": 0.25}
    found = reasons(ROW, contributions)
    assert [r.group for r in found] == ["links", "meaning", "kind"]  # dense_max describes the topic alone
    assert found[1].features == ("dense_score", "dense_gap", "dense_z") and found[1].contribution == pytest.approx(0.8)
    assert found[0].text.startswith(AGAINST) and not found[1].text.startswith(AGAINST)
    assert [r.group for r in reasons(ROW, contributions, limit=10)][-1] == "reverse"  # item_chars: too small


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
