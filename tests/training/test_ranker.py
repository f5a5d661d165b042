from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from edurank.artifacts import Manifest
from edurank.errors import InputError
from edurank.feedback import Decision, FeedbackStore
from edurank.pipelines.recommend import Query, Recommender
from edurank.reranker.cross_encoder.model import Reranker
from edurank.reranker.lightgbm.model import Ranker
from edurank.retriever.catalog import Catalog, load_catalog
from edurank.retriever.config import CandidateConfig
from edurank.retriever.hybrid import hybrid_candidates
from edurank.retriever.index_job import build_lexical, in_memory_index
from edurank.retriever.lexical import lexical_text
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import topic_parts
from edurank.retriever.topic_bank import NEIGHBOURS
from edurank.retriever.topic_folds import TRAIN_ONLY, topic_folds
from edurank.service.registry import usable_ranker
from edurank.timing import StageTimes
from edurank.training.candidates import Mined, mine_neighbours, mined_for, with_feedback
from edurank.training.config import RerankerConfig
from edurank.training.ranker import (
    RankerConfig,
    candidates_for,
    cross_fitted_features,
    evaluate_ranker,
    train_ranker,
    with_companion,
)
from edurank.training.reranker import train_reranker


@pytest.fixture(scope="module")
def trained(sample_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("ranker")
    return train_ranker(load_catalog(sample_catalog), ["bundled"], out, RankerConfig(folds=3)), out


def test_the_published_ranker_reports_held_out_figures_and_loads(trained: tuple[Path, Path]) -> None:
    path, _ = trained
    manifest = Manifest.read(path)
    assert manifest.kind == "ranker" and manifest.depends and manifest.params["folds"] == 3
    metrics = manifest.metrics
    assert set(metrics["folds"]) == {"0", "1", "2"}
    assert 0 < metrics["held_out"]["mean_f2"] <= 1 and 0 < metrics["retrieval_only"]["mean_f2"] <= 1
    assert metrics["candidate_recall"]["union"] >= metrics["candidate_recall"]["dense@64"]
    ranker = Ranker.load(path.parent)
    assert ranker.rule.tuned and ranker.features[:2] == ["dense_score", "dense_rank"]
    oof = pl.read_parquet(path / "oof.parquet")
    assert TRAIN_ONLY not in oof["fold"].to_list() and oof["probability"].is_between(0, 1).all()


def test_probability_never_falls_as_the_dense_cosine_rises(trained: tuple[Path, Path], sample_catalog: Path) -> None:
    path, out = trained
    ranker = Ranker.load(path)
    catalog = load_catalog(sample_catalog)
    config = RankerConfig(folds=3)
    mined = candidates_for(catalog, ["bundled"], out, config, **mined_for(config.groups))
    frame = cross_fitted_features(catalog, mined, config.groups).head(200)
    before = ranker.scores(frame)
    after = ranker.scores(frame.with_columns(pl.col("dense_score") + 0.2))
    assert np.all(after >= before - 1e-9)


def test_cross_fitting_is_deterministic_and_reuses_the_mined_candidates(trained: tuple[Path, Path],
                                                                       sample_catalog: Path) -> None:
    _, out = trained
    catalog = load_catalog(sample_catalog)
    config = RankerConfig(folds=3, objective="binary", trees=50)
    assert len(list((out / ".cache").glob("candidates-*.parquet"))) == 1
    runs = [evaluate_ranker(catalog, candidates_for(catalog, ["bundled"], out, config, **mined_for(config.groups)),
                            config)
            for _ in range(2)]
    for mined in ("candidates", "neighbours"):  # mined once, by the fixture
        assert len(list((out / ".cache").glob(f"{mined}-*.parquet"))) == 1
    assert runs[0][0]["score"].equals(runs[1][0]["score"]) and runs[0][2] == runs[1][2]
    assert 0 < runs[0][3]["held_out"]["mean_f2"] <= 1


def test_unknown_feature_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        RankerConfig(groups=("dense", "astrology"))
    with pytest.raises(ValueError, match="--cross-encoder"):
        RankerConfig(groups=("dense", "cross"))
    assert RankerConfig(cross_encoder="some/reranker").groups[-1] == "cross"


def test_a_cross_encoders_out_of_fold_logits_become_features_and_serve(sample_catalog: Path, tmp_path: Path) -> None:
    """The cross group reads the logits of a reranker cross-fitted on the same rows; served, the ranker needs
    that very reranker loaded and runs it on every candidate."""
    catalog = load_catalog(sample_catalog)
    candidates = CandidateConfig(8, 4)
    reranker_path = train_reranker(catalog, ["bundled"], tmp_path / "reranker", RerankerConfig(
        candidates=candidates, folds=3, loss="listwise", hard_negatives=4, negatives=3, epochs=1, topic_tokens=16,
        content_tokens=24, freeze_layers=5))
    with pytest.raises(InputError, match="not cross-fitted on these candidates"):
        train_ranker(catalog, ["bundled"], tmp_path / "ranker", RankerConfig(
            candidates=candidates, folds=2, cross_encoder=str(reranker_path)))
    config = RankerConfig(candidates=candidates, folds=3, cross_encoder=str(reranker_path), trees=50)
    ranker = Ranker.load(train_ranker(catalog, ["bundled"], tmp_path / "ranker", config))
    reranker = Reranker.load(reranker_path)
    assert ranker.groups[-1] == "cross" and ranker.cross_encoder == reranker.fingerprint
    assert ranker.manifest is not None and reranker.fingerprint in {d.fingerprint for d in ranker.manifest.depends}

    encoder = BiEncoder.load("bundled")
    index = in_memory_index(encoder, catalog, build_lexical(catalog))
    assert usable_ranker(ranker, index, catalog, None) is None  # its cross-encoder is not loaded
    assert "is loaded" in (ranker.cross_encoder_problem("f" * 64) or "")
    assert usable_ranker(ranker, index, catalog, reranker) is ranker
    recommender = Recommender(encoder, index, catalog.content, reranker, ranker=ranker, topics=catalog.topics)
    topic = catalog.topics_in_order([sorted(catalog.gold)[0]])
    timer = StageTimes()
    query = Query(topic_parts(topic)[0], topic_id=topic["id"][0], language="en")
    [frame] = recommender.scored_candidates([query], timer=timer)
    assert len(frame) and frame["probability"].is_between(0, 1).all() and timer.seconds["rerank"] > 0


def test_explanations_add_up_to_the_score(trained: tuple[Path, Path], sample_catalog: Path) -> None:
    path, out = trained
    ranker = Ranker.load(path)
    catalog = load_catalog(sample_catalog)
    mined = candidates_for(catalog, ["bundled"], out, RankerConfig(folds=3), **mined_for(ranker.groups))
    frame = cross_fitted_features(catalog, mined, ranker.groups).head(50)
    contributions = ranker.contributions(frame)
    assert contributions.shape == (50, len(ranker.features) + 1)  # one per feature, plus the expected value
    assert np.allclose(contributions.sum(axis=1), ranker.scores(frame), atol=1e-6)


def test_a_companion_encoders_cosine_becomes_features_and_serves(sample_catalog: Path, tmp_path: Path) -> None:
    """The companion group reads a second encoder's cosine; served, the index must hold that encoder's vectors
    and the encoder must be loaded to embed the query."""
    catalog = load_catalog(sample_catalog)
    config = RankerConfig(candidates=CandidateConfig(8, 4), folds=3, companion="bundled", trees=50)
    ranker = Ranker.load(train_ranker(catalog, ["bundled"], tmp_path / "ranker", config))
    companion = BiEncoder.load("bundled")
    assert ranker.groups[-1] == "companion" and ranker.companion == companion.fingerprint
    assert ranker.companion_model() is not None and "companion_gap" in ranker.features

    encoder = BiEncoder.load("bundled")
    plain = in_memory_index(encoder, catalog, build_lexical(catalog))
    assert usable_ranker(ranker, plain, catalog) is None  # the index holds no companion vectors
    index = in_memory_index(encoder, catalog, plain.lexical, companion=companion)
    assert usable_ranker(ranker, index, catalog) is None  # no companion encoder loaded for the queries
    assert usable_ranker(ranker, index, catalog, companion=companion) is ranker
    recommender = Recommender(encoder, index, catalog.content, ranker=ranker, topics=catalog.topics,
                              companion=companion)
    topic = catalog.topics_in_order([sorted(catalog.gold)[0]])
    query = Query(topic_parts(topic)[0], topic_id=topic["id"][0], language=topic["language"][0])
    [frame] = recommender.scored_candidates([query])
    assert len(frame) and frame["probability"].is_between(0, 1).all()
    # the served companion cosine of each candidate is the one the ranker trained on
    served = hybrid_candidates(index, recommender.encode([query]), [lexical_text(query.parts)], [query.filters],
                               config.candidates, [query.topic_id], recommender.encode([query], encoder=companion))[0]
    mined, _ = with_companion(candidates_for(catalog, ["bundled"], tmp_path / "ranker", config), catalog, "bundled",
                              tmp_path / "ranker" / ".cache")
    trained = mined.candidates.filter(pl.col("topic_id") == query.topic_id).select("row", "companion_score")
    both = served.select("row", "companion_score").join(trained, on="row", suffix="_trained")
    assert len(both) == len(served) and np.allclose(both["companion_score"], both["companion_score_trained"], atol=1e-5)
    with pytest.raises(ValueError, match="--companion"):
        RankerConfig(groups=("dense", "companion"))


def test_a_topics_neighbours_are_the_same_mined_and_served(sample_catalog: Path) -> None:
    catalog = load_catalog(sample_catalog)
    encoder = BiEncoder.load("bundled")
    topic_ids = sorted(catalog.gold)[:3]
    mined = mine_neighbours(catalog, {encoder.path: topic_ids}, k=5)
    index = in_memory_index(encoder, catalog, build_lexical(catalog))
    topics = catalog.topics_in_order(topic_ids)
    recommender = Recommender(encoder, index, catalog.content, topics=catalog.topics)
    vectors = recommender.encode([Query(parts, topic_id=t) for parts, t in zip(topic_parts(topics), topic_ids,
                                                                                strict=True)])
    assert index.topics is not None
    served = index.topics.neighbours(vectors, topic_ids, 5)
    assert mined["neighbour"].to_list() == served["neighbour"].to_list()
    assert np.allclose(mined["neighbour_score"].to_numpy(), served["neighbour_score"].to_numpy(), atol=1e-5)
    assert all(topic not in mined.filter(pl.col("topic_id") == topic)["neighbour"].to_list() for topic in topic_ids)


def test_a_held_out_topics_neighbours_show_only_links_that_train_while_its_fold_is_out(
        trained: tuple[Path, Path], sample_catalog: Path) -> None:
    _, out = trained
    catalog = load_catalog(sample_catalog)
    config = RankerConfig(folds=3)
    mined = candidates_for(catalog, ["bundled"], out, config, **mined_for(config.groups))
    assert mined.neighbours is not None
    frame = cross_fitted_features(catalog, mined, ["neighbours"])
    links = catalog.correlations
    linked = set(links["topic_id"].to_list())
    order = mined.candidates.filter(pl.col("topic_id").is_in(list(mined.crossfit.assignment)))["topic_id"] \
        .unique(maintain_order=True).to_list()  # query i of the features is topic order[i]
    checked = 0
    for topic in order[:6]:
        training = mined.crossfit.training[mined.crossfit.assignment[topic]]
        known = [n for n in mined.neighbours.filter(pl.col("topic_id") == topic)["neighbour"].to_list()
                 if n in training and n in linked and n != topic][:NEIGHBOURS]
        rows = frame.filter(pl.col("query") == order.index(topic)).select("content_id", "neighbour_votes").rows()
        for content_id, votes in rows:
            linkers = set(links.filter(pl.col("content_id") == content_id)["topic_id"].to_list())
            assert votes == len(linkers.intersection(known)), (topic, content_id)
            checked += votes
    assert checked > 0  # some held-out topic's neighbours did vote


def feedback_pairs(catalog: Catalog, mined: Mined) -> dict[str, tuple[str, str]]:
    """Pairs a curator might decide on: a candidate the catalog does not link, a gold link among a topic's
    candidates (whose topic keeps another link), and an item for a topic nothing links."""
    rows = mined.candidates.filter(pl.col("topic_id").replace_strict(mined.crossfit.assignment, default=TRAIN_ONLY)
                                   != TRAIN_ONLY)
    new = rows.filter(~pl.col("label")).row(0, named=True)
    gold = rows.filter(pl.col("label") & (pl.col("topic_id") != new["topic_id"])
                       & pl.col("topic_id").map_elements(lambda t: len(catalog.gold[t]) > 1, return_dtype=pl.Boolean))
    rejected = gold.row(0, named=True)
    unlinked = catalog.topics.filter(~pl.col("id").is_in(list(catalog.gold)) & (pl.col("category") != "source"))
    return {"accepted": (new["topic_id"], new["content_id"]),
            "rejected": (rejected["topic_id"], rejected["content_id"]),
            "new_topic": (unlinked["id"][0], catalog.content["id"][0])}


def test_an_exported_feedback_folder_changes_the_links(sample_catalog: Path, tmp_path: Path) -> None:
    catalog = load_catalog(sample_catalog)
    topic_id, content_id = next(iter(catalog.correlations.iter_rows()))
    unlinked = next(t for t in catalog.topics["id"] if t not in catalog.gold)
    items = catalog.content["id"].to_list()
    export = tmp_path / "export"  # as `edurank feedback export` writes it
    export.mkdir()
    (export / "correlations.csv").write_text(f"topic_id,content_ids\n{unlinked},{items[0]} {items[1]}\n"
                                             f"no-such-topic,{items[2]}\n")
    (export / "rejected.csv").write_text(f"topic_id,content_id\n{topic_id},{content_id}\n{topic_id},no-such-item\n")
    changed, feedback = with_feedback(catalog, str(export))
    assert changed.gold[unlinked] == {items[0], items[1]}
    assert content_id not in changed.gold.get(topic_id, set())
    assert {k: feedback.summary[k] for k in ("accepted", "rejected", "skipped", "links_added", "links_removed",
                                             "topics_added")} == \
        {"accepted": 2, "rejected": 1, "skipped": 2, "links_added": 2, "links_removed": 1, "topics_added": 1}
    assert changed.data_hash == catalog.data_hash and len(changed.correlations) == len(catalog.correlations) + 2 - 1
    for bad in (tmp_path / "no-such.sqlite", tmp_path):  # no database there; a folder that is not an export
        with pytest.raises(InputError, match="--feedback"):
            with_feedback(catalog, str(bad))


def test_a_curators_decisions_train_the_ranker(trained: tuple[Path, Path], sample_catalog: Path,
                                               tmp_path: Path) -> None:
    """Accepted pairs become positives and links the graph reads, a rejected gold link becomes a negative, a
    topic only feedback links trains; the catalog's topics keep their folds and the cached candidates serve
    (only the new topic is mined)."""
    _, out = trained
    catalog = load_catalog(sample_catalog)
    config = RankerConfig(folds=3)
    pairs = feedback_pairs(catalog, candidates_for(catalog, ["bundled"], out, config, **mined_for(config.groups)))
    shutil.copytree(out / ".cache", tmp_path / "ranker" / ".cache")
    store = FeedbackStore.open(tmp_path / "feedback.sqlite")
    store.record([Decision(*pairs["accepted"], "accepted", rank=3, probability=0.4, source="review"),
                  Decision(*pairs["new_topic"], "imported"), Decision(*pairs["rejected"], "rejected"),
                  Decision("no-such-topic", pairs["accepted"][1], "accepted"),
                  Decision(*pairs["accepted"][:1], catalog.content["id"][-1], "flagged")])
    store.close()
    path = train_ranker(catalog, ["bundled"], tmp_path / "ranker",
                        replace(config, feedback=str(tmp_path / "feedback.sqlite")))
    manifest = Manifest.read(path)
    feedback = manifest.data["feedback"]
    assert {k: feedback[k] for k in ("accepted", "rejected", "skipped", "links_added", "links_removed",
                                     "topics_added", "rejected_outside_candidates")} == \
        {"accepted": 2, "rejected": 1, "skipped": 1, "links_added": 2, "links_removed": 1, "topics_added": 1,
         "rejected_outside_candidates": 0}
    assert manifest.data["hash"] == catalog.data_hash and manifest.params["feedback"].endswith("feedback.sqlite")
    oof = pl.read_parquet(path / "oof.parquet")
    label = {(t, c): flag for t, c, flag in oof.select("topic_id", "content_id", "label").iter_rows()}
    assert label[pairs["accepted"]] is True and label[pairs["rejected"]] is False
    assert pairs["new_topic"][0] in set(oof["topic_id"])  # it takes part: feedback gave it gold
    folds = topic_folds(catalog, 3)
    assert all(folds[t] == f for t, f in oof.select("topic_id", "fold").unique().iter_rows() if t in folds)
    links = set(Ranker.load(path).graph.links.select("topic_id", "content_id").iter_rows())
    assert {pairs["accepted"], pairs["new_topic"]} <= links and pairs["rejected"] not in links
    assert len(list((tmp_path / "ranker" / ".cache").glob("candidates-*.parquet"))) == 1
