from __future__ import annotations

from pathlib import Path

from edurank.retriever.catalog import load_catalog
from edurank.training.negatives import mine_hard_negatives


def test_mined_negatives_are_same_language_non_gold_and_below_the_margin(sample_catalog: Path,
                                                                         bundled_encoder) -> None:
    catalog = load_catalog(sample_catalog)
    topics = sorted(catalog.gold)[:12]
    mined = mine_hard_negatives(bundled_encoder, catalog, topics, top_n=10, margin=0.95)
    assert set(mined) == {(t, c) for t in topics for c in catalog.gold[t]}
    language = dict(catalog.content.select("id", "language").iter_rows())
    topic_language = dict(catalog.topics.select("id", "language").iter_rows())
    assert any(mined.values())
    for (topic, _), negatives in mined.items():
        assert len(negatives) <= 10
        assert not set(negatives) & catalog.gold[topic]
        assert {language[n] for n in negatives} <= {topic_language[topic]}


def test_a_zero_margin_skips_every_candidate(sample_catalog: Path, bundled_encoder) -> None:
    catalog = load_catalog(sample_catalog)
    mined = mine_hard_negatives(bundled_encoder, catalog, sorted(catalog.gold)[:3], top_n=10, margin=-1.0)
    assert all(negatives == [] for negatives in mined.values())


def test_topic_clusters_cover_every_topic(sample_catalog: Path, bundled_encoder) -> None:
    from edurank.training.negatives import topic_clusters

    catalog = load_catalog(sample_catalog)
    topics = sorted(catalog.gold)
    clusters = topic_clusters(bundled_encoder, catalog, topics, cluster_size=6)
    assert set(clusters) == set(topics)
    assert 2 <= len(set(clusters.values())) <= len(topics) // 6
