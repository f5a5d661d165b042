"""The ranker's feature groups by name, light to import (no polars or LightGBM): the columns each group adds
(reranker/lightgbm/features.py computes them) and the groups on by default, which `train ranker --groups`
offers without loading the features."""

from __future__ import annotations

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "dense": ("dense_score", "dense_rank"),
    "companion": ("companion_score", "companion_gap", "companion_z", "companion_position"),
    "lexical": ("lexical_score", "lexical_rank"),
    "topic_stats": ("dense_max", "dense_gap", "dense_ratio", "dense_z", "dense_position",
                    "lexical_max", "lexical_gap", "lexical_z", "lexical_position", "candidates"),
    "reverse": ("reverse_gap", "reverse_rank"),
    "graph": ("item_links", "parent_links", "sibling_links", "channel_links"),
    "neighbours": ("neighbour_best", "neighbour_gap", "neighbour_rank", "neighbour_votes"),
    "neighbour_items": ("neighbour_item_best", "neighbour_item_weighted", "neighbour_item_gap"),
    "topic_parts": ("part_title", "part_breadcrumbs", "part_description",
                    "part_title_gap", "part_breadcrumbs_gap", "part_description_gap"),
    "metadata": ("kind", "same_language", "category", "level", "topic_chars", "item_chars"),
    "cross": ("cross_logit", "cross_gap", "cross_position"),
}
# groups whose inputs a model beside the retriever computes (a cross-encoder: slow; a companion encoder: one
# more query encoding and stored vectors), off by default
NEEDS_MODEL = ("companion", "cross")
# groups that cost the service an encoder pass per request and paid nothing measurable on either shared
# catalog (bench/README.md, issue 28): off unless asked for
OPT_IN = ("topic_parts",)
DEFAULT_GROUPS = tuple(g for g in FEATURE_GROUPS if g not in NEEDS_MODEL + OPT_IN)
# groups that read the catalog's own links (what training topics link): they learn what a catalog's links say,
# which carries to a new topic only as far as its links resemble the training ones; ablations drop them together
LINK_GROUPS = ("graph", "neighbours", "neighbour_items")
TOPIC_PARTS = ("title", "breadcrumbs", "description")  # a topic's texts, each embedded alone for topic_parts
NEEDS_NEIGHBOURS = frozenset({"neighbours", "neighbour_items"})  # groups that read the query's nearest topics
