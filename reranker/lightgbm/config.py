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
    "metadata": ("kind", "same_language", "category", "level", "topic_chars", "item_chars"),
    "cross": ("cross_logit", "cross_gap", "cross_position"),
}
# groups whose inputs a model beside the retriever computes (a cross-encoder: slow; a companion encoder: one
# more query encoding and stored vectors), off by default
NEEDS_MODEL = ("companion", "cross")
DEFAULT_GROUPS = tuple(g for g in FEATURE_GROUPS if g not in NEEDS_MODEL)
