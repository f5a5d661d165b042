from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from edurank.errors import InputError
from edurank.retriever.catalog import load_catalog
from edurank.retriever.topic_folds import TRAIN_ONLY, extend_folds, split_topics, topic_folds
from tests.conftest import item, topic, write_catalog


def many_topics_catalog(tmp_path: Path) -> Path:
    topics = [topic("root", "Root")]
    content, correlations = [], []
    for i in range(40):
        language = "es" if i % 4 == 0 else "en"
        category = "source" if i < 4 else "supplemental"
        topics.append(topic(f"t{i}", f"Topic {i}", "root", language=language, category=category))
        content.append(item(f"c{i}", f"Item {i}", "text", language=language))
        correlations.append({"topic_id": f"t{i}", "content_ids": f"c{i}"})
    return write_catalog(tmp_path / "many", topics, content, correlations)


def test_folds_partition_topics_and_keep_source_in_training(tmp_path: Path) -> None:
    catalog = load_catalog(many_topics_catalog(tmp_path))
    assignment = topic_folds(catalog, 4)
    assert {assignment[f"t{i}"] for i in range(4)} == {TRAIN_ONLY}
    folds = [sorted(t for t, f in assignment.items() if f == k) for k in range(4)]
    assert sum(len(f) for f in folds) == 36 and all(len(f) == 9 for f in folds)
    for fold in folds:  # stratified: each fold holds Spanish topics in proportion (9 of 36 -> about 2)
        assert 1 <= sum(1 for t in fold if int(t[1:]) % 4 == 0) <= 3


def test_split_topics_is_disjoint_and_seeded(tmp_path: Path) -> None:
    catalog = load_catalog(many_topics_catalog(tmp_path))
    train, held_out = split_topics(catalog, 4, 1, seed=7)
    assert not set(train) & set(held_out) and len(train) + len(held_out) == 40
    assert split_topics(catalog, 4, 1, seed=7) == (train, held_out)
    assert split_topics(catalog, 4, None) == (sorted(catalog.gold), [])


def test_bad_fold_arguments(tmp_path: Path) -> None:
    catalog = load_catalog(many_topics_catalog(tmp_path))
    with pytest.raises(InputError, match="--fold 4: must be between 0 and 3"):
        split_topics(catalog, 4, 4)
    with pytest.raises(InputError, match="--folds 1"):
        topic_folds(catalog, 1)


def shared_questions_catalog(tmp_path: Path) -> Path:
    """20 questions with two wrong answers each (two topics sharing a title); 10 misconceptions, each linked
    from 4 topics of different questions."""
    topics, correlations = [], []
    for q in range(20):
        for answer in "AB":
            topics.append(topic(f"q{q}{answer}", f"Question {q}", category="supplemental",
                                description=f"Subject: Unit {q % 2}. Construct: Skill {q // 4}. Correct answer: "
                                            f"C. Student answer: {answer}"))
            correlations.append({"topic_id": f"q{q}{answer}", "content_ids": f"m{(2 * q + (answer == 'B')) % 10}"})
    content = [item(f"m{i}", f"Misconception {i}") for i in range(10)]
    return write_catalog(tmp_path / "questions", topics, content, correlations)


def test_group_by_keeps_a_questions_topics_in_one_fold(tmp_path: Path) -> None:
    catalog = load_catalog(shared_questions_catalog(tmp_path))
    by_topic, by_title = topic_folds(catalog, 5), topic_folds(catalog, 5, group_by="title")
    assert all(by_title[f"q{q}A"] == by_title[f"q{q}B"] for q in range(20))
    assert any(by_topic[f"q{q}A"] != by_topic[f"q{q}B"] for q in range(20))
    with pytest.raises(InputError, match="--group-by grade: not a topics column .* a named key"):
        topic_folds(catalog, 5, group_by="grade")


def test_group_by_construct_holds_out_every_question_of_a_construct(tmp_path: Path) -> None:
    """The named key reads "Construct: ..." out of the description: a held-out construct trains through none
    of its questions; COLUMN~REGEX does the same for any labelled text."""
    catalog = load_catalog(shared_questions_catalog(tmp_path))
    by_construct = topic_folds(catalog, 5, group_by="construct")
    for skill in range(5):
        assert len({by_construct[f"q{q}{a}"] for q in range(4 * skill, 4 * skill + 4) for a in "AB"}) == 1
    assert by_construct == topic_folds(catalog, 5, group_by=r"description~Construct: (Skill \d+)")
    by_subject = topic_folds(catalog, 2, group_by="subject")
    assert {by_subject[f"q{q}A"] for q in range(0, 20, 2)} != {by_subject[f"q{q}A"] for q in range(1, 20, 2)}
    with pytest.raises(InputError, match="--group-by description~Construct: \\(: bad regex"):
        topic_folds(catalog, 5, group_by="description~Construct: (")
    with pytest.raises(InputError, match="topics have no column 'notes'"):
        topic_folds(catalog, 5, group_by="notes~x")


def test_held_out_items_are_never_linked_by_a_training_topic(tmp_path: Path) -> None:
    catalog = load_catalog(shared_questions_catalog(tmp_path))
    train, held_out = split_topics(catalog, 5, 0, group_by="title", hold_out_items=0.5)
    plain_train, same_held_out = split_topics(catalog, 5, 0, group_by="title")
    assert held_out == same_held_out and set(train) < set(plain_train)
    linked_in_training = {m for t in train for m in catalog.gold[t]}
    held_out_items = {m for t in held_out for m in catalog.gold[t]}
    unseen = held_out_items - linked_in_training
    assert len(unseen) == round(0.5 * len(held_out_items))
    assert split_topics(catalog, 5, 0, group_by="title", hold_out_items=0.5)[0] == train  # seeded


def test_feedback_links_keep_the_catalogs_folds(tmp_path: Path) -> None:
    """Topics the catalog links keep their folds when feedback changes the links; a topic only feedback links
    joins its group's fold, else a seeded one; a topic that lost every link drops out."""
    catalog = load_catalog(many_topics_catalog(tmp_path))
    assignment = topic_folds(catalog, 4, seed=3)
    topics = catalog.topics.with_columns(
        pl.when(pl.col("id") == "root").then(pl.lit("t5")).otherwise(pl.col("id")).alias("group"))
    links = pl.concat([catalog.correlations.filter(pl.col("topic_id") != "t6"),
                       pl.DataFrame({"topic_id": ["root"], "content_id": ["c1"]})])
    changed = replace(catalog, topics=topics, correlations=links)
    extended = extend_folds(assignment, changed, 4, seed=3, group_by="group")
    assert "t6" not in extended and extended["root"] == assignment["t5"]
    assert all(extended[t] == f for t, f in assignment.items() if t != "t6")
    alone = extend_folds(assignment, replace(catalog, correlations=links), 4, seed=3)
    assert 0 <= alone["root"] < 4 and alone == extend_folds(assignment, replace(catalog, correlations=links), 4, seed=3)
