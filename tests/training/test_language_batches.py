from __future__ import annotations

import random

from edurank.training.language_batches import Example, language_batches

GOLD = {"t1": {"a", "b"}, "t2": {"a"}, "t3": {"c"}, "t4": {"d"}, "t5": {"e"}, "t6": {"f"}}


def rows_of(batch: list[Example]) -> set[str]:
    return {e.positive for e in batch} | {e.negative for e in batch if e.negative}


def test_batches_hold_one_language_and_no_false_negatives() -> None:
    examples = [Example("t1", "a", "en", "c"), Example("t1", "b", "en", "d"), Example("t2", "a", "en", "e"),
                Example("t3", "c", "en", "f"), Example("t4", "d", "en"), Example("t5", "e", "fr"),
                Example("t6", "f", "fr")]
    for seed in range(20):
        batches = language_batches(examples, GOLD, 4, random.Random(seed))
        for batch in batches:
            assert len({e.language for e in batch}) == 1
            assert len({e.topic for e in batch}) == len(batch)
            for example in batch:
                others = rows_of([e for e in batch if e is not example])
                assert not GOLD[example.topic] & others, (seed, batch)


def test_every_example_is_used_at_most_once() -> None:
    examples = [Example(f"t{i}", f"c{i}", "en") for i in range(10)]
    gold = {f"t{i}": {f"c{i}"} for i in range(10)}
    batches = language_batches(examples, gold, 3, random.Random(0))
    used = [e.topic for b in batches for e in b]
    assert len(used) == len(set(used)) == 9  # a lone leftover row is dropped: it would have no negatives
    assert [len(b) for b in batches] == [3, 3, 3]


def test_clusters_keep_similar_topics_in_the_same_batch() -> None:
    examples = [Example(f"t{i}", f"c{i}", "en") for i in range(12)]
    gold = {f"t{i}": {f"c{i}"} for i in range(12)}
    clusters = {f"t{i}": i % 3 for i in range(12)}  # three clusters of four topics
    for seed in range(5):
        batches = language_batches(examples, gold, 4, random.Random(seed), clusters)
        assert sorted(len({clusters[e.topic] for e in batch}) for batch in batches) == [1, 1, 1]
