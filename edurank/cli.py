"""The `edurank` command: training, indexing, evaluation and the demo, all scriptable.

Bad input exits with code 2 and one line saying what is wrong and where; usage errors do the same
(argparse's convention).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edurank import SAMPLE_CATALOG
from edurank.errors import InputError

DEMO_QUERIES = (
    ("Adding fractions with different denominators", None),
    ("Wie berechnet man das Volumen eines Quaders?", None),
    ("la fotosíntesis de las plantas", "es"),
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all cores)")


def add_folds(parser: argparse.ArgumentParser, fold_help: str) -> None:
    """--folds/--fold/--seed, shared by training and evaluation so both cut the same folds."""
    parser.add_argument("--folds", type=positive_int, default=5)
    parser.add_argument("--fold", type=int, default=None, help=fold_help)
    parser.add_argument("--seed", type=int, default=42)


def add_evaluation_set(parser: argparse.ArgumentParser, out: str) -> None:
    """--topics/--correlations/--fold/--out/--threads: which topics an evaluation scores, and where."""
    parser.add_argument("--topics", type=Path, default=None, help="evaluation topics (default: catalog's)")
    parser.add_argument("--correlations", type=Path, default=None)
    add_folds(parser, "evaluate only this held-out fold (default: every topic with content)")
    parser.add_argument("--out", type=Path, default=Path(out))
    add_threads(parser)


def add_stored_evaluation(parser: argparse.ArgumentParser, what: str, out: str) -> None:
    """--model/--data/--out/--oof/--threads of evaluations that can read an artifact's stored OOF predictions."""
    parser.add_argument("--model", required=True, help=f"{what} artifact (a version dir or its root)")
    parser.add_argument("--data", type=Path, required=True, help="labelled CSV")
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--oof", action="store_true",
                        help="report the artifact's stored out-of-fold predictions instead of predicting --data "
                             "(the figure for data it trained on)")
    add_threads(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edurank", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="index the bundled sample catalog and answer a few queries")
    demo.add_argument("--catalog", type=Path, default=SAMPLE_CATALOG)
    demo.add_argument("--model", default=None, help="encoder dir (default: bundled all-MiniLM-L6-v2)")
    demo.add_argument("--out", type=Path, default=Path("artifacts/index/sample"))
    demo.add_argument("-k", type=positive_int, default=5)
    add_threads(demo)

    train = commands.add_parser("train", help="train a model").add_subparsers(dest="job", required=True)
    retriever = train.add_parser("retriever", help="bi-encoder with in-batch and mined hard negatives")
    retriever.add_argument("--catalog", type=Path, required=True)
    retriever.add_argument("--out", type=Path, required=True, help="artifact root; the version goes below it")
    retriever.add_argument("--model", default=None, help="start from this local ST/HF dir (default: bundled)")
    retriever.add_argument("--rounds", type=int, default=2, help="hard-negative rounds after the first")
    retriever.add_argument("--epochs", type=positive_int, default=3, help="epochs of the in-batch round")
    retriever.add_argument("--hard-negative-epochs", type=positive_int, default=2)
    retriever.add_argument("--batch-size", type=positive_int, default=64)
    retriever.add_argument("--lr", type=float, default=5e-5)
    retriever.add_argument("--max-tokens", type=positive_int, default=128)
    retriever.add_argument("--top-n", type=positive_int, default=50, help="mine negatives from this top-N")
    retriever.add_argument("--margin", type=float, default=0.95,
                           help="skip candidates scoring above margin x the gold item's score")
    retriever.add_argument("--freeze-layers", type=int, default=0)
    retriever.add_argument("--symmetric", action="store_true", help="add the item->topic direction to the loss")
    retriever.add_argument("--cluster-size", type=int, default=0,
                           help="build batches from k-means clusters of about this many similar topics (0: off)")
    add_folds(retriever, "hold this fold out (default: train on every topic)")
    add_threads(retriever)

    reranker = train.add_parser("reranker", help="cross-encoder over stage 1's candidates, cross-fitted")
    reranker.add_argument("--catalog", type=Path, required=True)
    reranker.add_argument("--retriever", action="append", required=True, metavar="DIR",
                          help="retriever(s) to mine candidates with; each topic is mined by one that never "
                               "trained on it (fold models from `train retriever --fold I`, or 'bundled')")
    reranker.add_argument("--out", type=Path, required=True, help="artifact root; the version goes below it")
    reranker.add_argument("--model", default=None, help="start from this local HF/ST dir (default: bundled)")
    reranker.add_argument("--candidates", type=positive_int, default=32, help="top-N retrieved per topic")
    reranker.add_argument("--negatives", type=int, default=8,
                          help="negatives sampled per topic and epoch from its candidates (0: all)")
    reranker.add_argument("--epochs", type=positive_int, default=1)
    reranker.add_argument("--batch-size", type=positive_int, default=32)
    reranker.add_argument("--lr", type=float, default=5e-5)
    reranker.add_argument("--pos-weight", type=float, default=None,
                          help="BCE weight of positives (default: negatives / positives seen per epoch)")
    reranker.add_argument("--topic-tokens", type=positive_int, default=32)
    reranker.add_argument("--content-tokens", type=positive_int, default=64)
    reranker.add_argument("--rank-feature", action="store_true", help="write the retrieval rank into the pair")
    reranker.add_argument("--freeze-layers", type=int, default=0)
    reranker.add_argument("--no-cross-fit", dest="cross_fit", action="store_false",
                          help="skip the fold models (faster; calibration by prior correction, rule untuned)")
    add_folds(reranker, "hold this fold out entirely, for `evaluate recommend --fold` (default: use every topic)")
    add_threads(reranker)

    essays = train.add_parser("essays", help="six-trait essay scorer: fast path, fine-tuned path, OOF blend")
    essays.add_argument("--data", type=Path, required=True, help="CSV: text_id, full_text and the six traits")
    essays.add_argument("--out", type=Path, required=True, help="artifact root; the version goes below it")
    essays.add_argument("--model", default=None, help="encoder: a local HF/ST dir (default: bundled MiniLM)")
    essays.add_argument("--paths", choices=("auto", "fast", "finetune", "both"), default="auto",
                        help="fast: frozen features -> SVR + TF-IDF ridge (CPU minutes); finetune: fold models; "
                             "auto: both on a GPU, fast on a CPU")
    essays.add_argument("--train-folds", type=positive_int, default=None,
                        help="fine-tune only the first N folds (exploring; the blend is fitted where OOF exists)")
    essays.add_argument("--max-tokens", type=positive_int, default=256, help="window length, special tokens included")
    essays.add_argument("--stride", type=positive_int, default=192, help="tokens between window starts")
    fast = essays.add_argument_group("fast path")
    fast.add_argument("--layers", default="2,4,6", help="hidden states averaged into the features (0 = embeddings)")
    fast.add_argument("--dense-model", choices=("ridge", "svr"), default="ridge")
    fast.add_argument("--svr-c", type=float, default=1.0)
    fast.add_argument("--ridge-alpha", type=float, default=2000.0, help="alpha of the dense ridge (~1,200 features)")
    fast.add_argument("--tfidf-alpha", type=float, default=2.0)
    tune = essays.add_argument_group("fine-tuned path")
    tune.add_argument("--pooling", choices=("mean", "attention", "weighted-layer"), default="mean")
    tune.add_argument("--loss", choices=("rmse", "smoothl1"), default="rmse")
    tune.add_argument("--epochs", type=positive_int, default=3)
    tune.add_argument("--batch-size", type=positive_int, default=8, help="essays per batch (all their windows)")
    tune.add_argument("--accumulation", type=positive_int, default=1, help="batches per optimizer step")
    tune.add_argument("--lr", type=float, default=5e-5, help="learning rate of the top encoder layer")
    tune.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of pooling and head")
    tune.add_argument("--layer-decay", type=float, default=0.9, help="LLRD: each layer down trains at this x")
    tune.add_argument("--dropout", type=float, default=0.0, help="dropout before the head")
    tune.add_argument("--fgm", type=float, default=0.0, metavar="EPSILON",
                      help="FGM adversarial training on the word embeddings (0: off; 1.0 is usual)")
    tune.add_argument("--freeze-layers", type=int, default=0, help="freeze embeddings + this many lower layers")
    tune.add_argument("--evals-per-epoch", type=positive_int, default=2)
    tune.add_argument("--patience", type=positive_int, default=2, help="evaluations without gain before stopping")
    tune.add_argument("--no-mixed-precision", dest="mixed_precision", action="store_false",
                      help="keep fp32 on a GPU (mixed precision is never used on a CPU)")
    essays.add_argument("--folds", type=positive_int, default=5, help="multilabel-stratified folds")
    essays.add_argument("--seed", type=int, default=42)
    add_threads(essays)

    classifier = train.add_parser("classifier", help="misconception classifier: k-fold members bagged over folds "
                                                     "and seeds, OOF MAP@3, likely label errors")
    classifier.add_argument("--data", type=Path, required=True,
                            help="CSV: row_id, QuestionId, QuestionText, MC_Answer, StudentExplanation, Category, "
                                 "Misconception")
    classifier.add_argument("--out", type=Path, required=True, help="artifact root; the version goes below it")
    classifier.add_argument("--model", default=None, help="encoder: a local BERT-like HF dir (default: bundled MiniLM)")
    classifier.add_argument("--folds", type=positive_int, default=5, help="label-stratified folds")
    classifier.add_argument("--train-folds", type=positive_int, default=None,
                            help="train only the first N folds (exploring; OOF figures cover those folds)")
    classifier.add_argument("--seeds", default="42", help="comma-separated seeds: one member per fold and seed")
    classifier.add_argument("--max-length", type=positive_int, default=160, help="prompt tokens kept")
    classifier.add_argument("--freeze-layers", type=int, default=4,
                            help="frozen lower layers (their output is cached); the layers above train")
    classifier.add_argument("--epochs", type=positive_int, default=2)
    classifier.add_argument("--batch-size", type=positive_int, default=32)
    classifier.add_argument("--lr", type=float, default=1e-4, help="learning rate of the trained encoder layers")
    classifier.add_argument("--head-lr", type=float, default=1e-3)
    classifier.add_argument("--dropout", type=float, default=0.1, help="dropout before the head")
    classifier.add_argument("--layer-dropout", type=float, default=0.0,
                            help="dropout inside the trained encoder layers (0: off, 1.6x faster steps on a CPU)")
    classifier.add_argument("--awp", type=float, default=0.0, metavar="LR",
                            help="adversarial weight perturbation step (0: off; 1.0 is usual)")
    classifier.add_argument("--awp-eps", type=float, default=1e-3, help="AWP's bound, relative to each weight")
    classifier.add_argument("--awp-from-epoch", type=int, default=1, help="first epoch (0-based) with AWP")
    classifier.add_argument("--label-issues", default=None,
                            help="a classifier artifact whose label_issues.parquet lists rows to --noisy")
    classifier.add_argument("--noisy", choices=("none", "drop", "downweight"), default="none",
                            help="what training does with the rows --label-issues flags")
    classifier.add_argument("--noisy-weight", type=float, default=0.3, help="loss weight of flagged rows (downweight)")
    classifier.add_argument("--evals-per-epoch", type=positive_int, default=1, help="held-out figures per epoch")
    add_threads(classifier)

    index = commands.add_parser("index", help="batch offline indexing job")
    index.add_argument("--catalog", type=Path, required=True)
    index.add_argument("--model", default=None)
    index.add_argument("--out", type=Path, required=True, help="index root; the version goes below it")
    index.add_argument("--index-type", choices=("flat", "ivf", "hnsw"), default="flat")
    index.add_argument("--nlist", type=positive_int, default=None, help="IVF lists (default ~4 sqrt(n))")
    index.add_argument("--batch-size", type=positive_int, default=32)
    add_threads(index)

    search = commands.add_parser("search", help="query an index with free text")
    search.add_argument("--index", type=Path, required=True)
    search.add_argument("--model", default=None)
    search.add_argument("--language", action="append", default=None)
    search.add_argument("--kind", action="append", default=None)
    search.add_argument("-k", type=positive_int, default=10)
    search.add_argument("query", nargs="+")

    evaluate = commands.add_parser("evaluate", help="evaluate a model").add_subparsers(dest="job", required=True)
    retrieval = evaluate.add_parser("retrieval", help="recall@k and MAP@25 over the whole catalog")
    retrieval.add_argument("--catalog", type=Path, required=True)
    retrieval.add_argument("--model", default=None)
    add_evaluation_set(retrieval, "artifacts/reports/retrieval")

    recommend = evaluate.add_parser("recommend", help="mean F2 / precision / recall of retrieve -> rerank -> rule")
    recommend.add_argument("--catalog", type=Path, required=True)
    recommend.add_argument("--retriever", default=None, help="retriever dir (default: bundled)")
    recommend.add_argument("--reranker", required=True)
    recommend.add_argument("--candidates", type=positive_int, default=None,
                           help="top-N to rerank (default: what the reranker was trained on)")
    add_evaluation_set(recommend, "artifacts/reports/recommend")

    essays = evaluate.add_parser("essays", help="MCRMSE and per-trait RMSE of an essay scorer on a scored CSV")
    add_stored_evaluation(essays, "essay scorer", "artifacts/reports/essays")
    classifier = evaluate.add_parser("classifier", help="MAP@3, accuracy@1, per-category figures, confusion matrix "
                                                        "and likely label errors of a classifier on a labelled CSV")
    add_stored_evaluation(classifier, "classifier", "artifacts/reports/classifier")

    serve = commands.add_parser("serve", help="start the HTTP service (settings: EDURANK_* variables, see README)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    return parser


def run_demo(args: argparse.Namespace) -> None:
    from retriever.catalog import load_catalog
    from retriever.indexing import build_index, load_index, search_text
    from retriever.model import BiEncoder

    encoder = BiEncoder.load(args.model)
    catalog = load_catalog(args.catalog)
    try:
        index = load_index(args.out, encoder)
        if index.manifest["catalog"]["hash"] != catalog.data_hash:
            raise InputError("the catalog changed since the index was built")
        print(f"using index {args.out} ({index.manifest['count']} items)")
    except InputError:  # none yet, another model's, or a stale one: (re)build it
        path = build_index(encoder, catalog, args.out)
        index = load_index(path, encoder)
        print(f"built index {path} ({index.manifest['count']} items, "
              f"{index.manifest['items_per_second']} items/s)")
    for query, language in DEMO_QUERIES:
        languages = [language] if language else None
        print(f"\n> {query}" + (f"  [language={language}]" if language else ""))
        for row in search_text(index, encoder, [query], args.k, languages)[0].iter_rows(named=True):
            print(f"  {row['rank']:>2}. {row['score']:.3f}  {row['id']:<11} {row['language']}  "
                  f"{row['kind'] or '-':<9} {row['title'][:70]}")
    topics = catalog.topics_with_content().head(2)
    for topic_id, title, crumbs in topics.select("id", "title", "breadcrumbs").iter_rows():
        query = encoder.encode_topics(catalog, catalog.topics.filter(catalog.topics["id"] == topic_id))
        scores, rows = index.search(query, args.k)
        gold = catalog.gold[topic_id]
        print(f"\n> topic {topic_id}: {crumbs} > {title}")
        for rank, (score, row) in enumerate(zip(scores[0], rows[0], strict=True), start=1):
            item = index.items.row(int(row), named=True)
            mark = "*" if item["id"] in gold else " "
            print(f"  {rank:>2}. {score:.3f} {mark} {item['id']:<11} {item['title'][:70]}")
    print("\n(* = in the topic's correlations)")


def run_train_retriever(args: argparse.Namespace) -> None:
    from retriever.catalog import load_catalog
    from training.retriever import RetrieverConfig, train_retriever

    if args.rounds < 0:
        raise InputError(f"--rounds {args.rounds}: must be >= 0")
    config = RetrieverConfig(base_model=args.model, rounds=args.rounds, epochs=args.epochs,
                             hard_negative_epochs=args.hard_negative_epochs, batch_size=args.batch_size,
                             learning_rate=args.lr, max_tokens=args.max_tokens, top_n=args.top_n,
                             margin=args.margin, freeze_layers=args.freeze_layers, symmetric=args.symmetric,
                             cluster_size=args.cluster_size, folds=args.folds,
                             fold=args.fold, seed=args.seed)
    path = train_retriever(load_catalog(args.catalog), args.out, config)
    print(path)


def run_train_reranker(args: argparse.Namespace) -> None:
    from retriever.catalog import load_catalog
    from training.reranker import RerankerConfig, train_reranker

    if args.negatives < 0:
        raise InputError(f"--negatives {args.negatives}: must be >= 0")
    config = RerankerConfig(base_model=args.model, candidates=args.candidates, negatives=args.negatives,
                            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                            pos_weight=args.pos_weight, topic_tokens=args.topic_tokens,
                            content_tokens=args.content_tokens, rank_feature=args.rank_feature,
                            freeze_layers=args.freeze_layers, cross_fit=args.cross_fit, folds=args.folds,
                            fold=args.fold, seed=args.seed)
    print(train_reranker(load_catalog(args.catalog), args.retriever, args.out, config))


def run_train_essays(args: argparse.Namespace) -> None:
    from essays.fast import FastConfig
    from essays.windows import WindowSpec
    from training.essays import EssayConfig, FineTuneConfig, resolve_paths, train_essays

    try:
        windows = WindowSpec(args.max_tokens, args.stride)
        layers = tuple(int(layer) for layer in args.layers.split(","))
    except ValueError as err:
        raise InputError(f"--max-tokens/--stride/--layers: {err}") from err
    fast = FastConfig(layers=layers, dense_model=args.dense_model, svr_c=args.svr_c, ridge_alpha=args.ridge_alpha,
                      tfidf_alpha=args.tfidf_alpha, windows=windows)
    tune = FineTuneConfig(pooling=args.pooling, loss=args.loss, epochs=args.epochs, essays_per_batch=args.batch_size,
                          accumulation=args.accumulation, learning_rate=args.lr, head_learning_rate=args.head_lr,
                          layer_decay=args.layer_decay, dropout=args.dropout, fgm_epsilon=args.fgm,
                          freeze_layers=args.freeze_layers, evals_per_epoch=args.evals_per_epoch,
                          patience=args.patience, mixed_precision=args.mixed_precision)
    config = EssayConfig(base_model=args.model, paths=resolve_paths(args.paths), folds=args.folds,
                         train_folds=args.train_folds, seed=args.seed, windows=windows, fast=fast, finetune=tune)
    print(train_essays(args.data, args.out, config))


def run_train_classifier(args: argparse.Namespace) -> None:
    from training.classifier import ClassifierConfig, train_classifier

    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(","))
    except ValueError as err:
        raise InputError(f"--seeds {args.seeds}: give comma-separated integers") from err
    config = ClassifierConfig(
        base_model=args.model, folds=args.folds, train_folds=args.train_folds, seeds=seeds, max_length=args.max_length,
        freeze_layers=args.freeze_layers, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        head_learning_rate=args.head_lr, dropout=args.dropout, layer_dropout=args.layer_dropout, awp_lr=args.awp,
        awp_eps=args.awp_eps, awp_from_epoch=args.awp_from_epoch, noisy=args.noisy, noisy_weight=args.noisy_weight,
        label_issues=args.label_issues, evals_per_epoch=args.evals_per_epoch)
    print(train_classifier(args.data, args.out, config))


def run_evaluate_essays(args: argparse.Namespace) -> None:
    import json

    from essays.evaluation import evaluate_essays, write_report

    report, truth, predicted = evaluate_essays(args.model, args.data, args.oof)
    json_path, png_path = write_report(report, truth, predicted, args.out)
    print(json.dumps(report, indent=2))
    print(f"wrote {json_path} and {png_path}")


def run_evaluate_classifier(args: argparse.Namespace) -> None:
    import json

    from classifier.evaluation import evaluate_classifier, write_report

    report, frame, probabilities, labels = evaluate_classifier(args.model, args.data, args.oof)
    paths = write_report(report, frame, probabilities, labels, args.out)
    print(json.dumps(report, indent=2))
    print(f"wrote {', '.join(map(str, paths))}")


def run_index(args: argparse.Namespace) -> None:
    from retriever.catalog import load_catalog
    from retriever.indexing import build_index
    from retriever.model import BiEncoder

    catalog = load_catalog(args.catalog)
    path = build_index(BiEncoder.load(args.model), catalog, args.out, args.index_type, args.batch_size, args.nlist)
    print(path)


def run_search(args: argparse.Namespace) -> None:
    from retriever.indexing import load_index, search_text
    from retriever.model import BiEncoder

    encoder = BiEncoder.load(args.model)
    index = load_index(args.index, encoder)
    for query, frame in zip(args.query, search_text(index, encoder, args.query, args.k, args.language, args.kind),
                            strict=True):
        print(f"> {query}")
        print(frame)


def run_evaluate_retrieval(args: argparse.Namespace) -> None:
    import json

    from retriever.catalog import load_catalog
    from retriever.evaluation import evaluate_retrieval, write_report
    from retriever.model import BiEncoder
    from training.splits import split_topics

    catalog = load_catalog(args.catalog, args.topics, args.correlations)
    topics = split_topics(catalog, args.folds, args.fold, args.seed)[1] if args.fold is not None else None
    encoder = BiEncoder.load(args.model)
    report = {"model": str(encoder.path), "fold": args.fold, **evaluate_retrieval(encoder, catalog, topics)}
    json_path, png_path = write_report(report, args.out)
    print(json.dumps(report, indent=2))
    print(f"wrote {json_path} and {png_path}")


def run_evaluate_recommend(args: argparse.Namespace) -> None:
    import json

    from reranker.evaluation import evaluate_recommend, write_report
    from reranker.model import Reranker
    from reranker.pipeline import Recommender
    from retriever.catalog import load_catalog
    from retriever.index import ContentIndex, build_faiss
    from retriever.model import BiEncoder
    from training.splits import seen_topics, split_topics

    catalog = load_catalog(args.catalog, args.topics, args.correlations)
    topics = split_topics(catalog, args.folds, args.fold, args.seed)[1] if args.fold is not None else None
    encoder, reranker = BiEncoder.load(args.retriever), Reranker.load(args.reranker)
    if topics is not None:
        for name, path in (("retriever", encoder.path), ("reranker", reranker.path)):
            try:
                seen = len(seen_topics(path, catalog).intersection(topics))
            except InputError as err:
                logging.warning("cannot check that the fold is held out: %s", err)
                continue
            if seen:
                logging.warning("the %s trained on %d of the fold's %d topics: figures are not held-out",
                                name, seen, len(topics))
    index = ContentIndex(build_faiss(encoder.encode_content(catalog, progress=True)),
                         catalog.content.select("id", "language", "kind", "title"), {})
    candidates = args.candidates or int(reranker.manifest.get("params", {}).get("candidates", 32))
    report = {"retriever": str(encoder.path), "reranker": str(reranker.path), "fold": args.fold,
              **evaluate_recommend(Recommender(encoder, index, catalog.content, reranker), catalog, topics,
                                   candidates)}
    json_path, png_path = write_report(report, args.out)
    print(json.dumps({k: v for k, v in report.items() if k != "curve"}, indent=2))
    print(f"wrote {json_path} and {png_path}")


def run_serve(args: argparse.Namespace) -> None:
    from service.app import serve

    serve(args.host, args.port)


HANDLERS = {"demo": run_demo, "index": run_index, "search": run_search,
            "serve": run_serve,
            ("train", "retriever"): run_train_retriever, ("train", "reranker"): run_train_reranker,
            ("train", "essays"): run_train_essays, ("evaluate", "essays"): run_evaluate_essays,
            ("train", "classifier"): run_train_classifier, ("evaluate", "classifier"): run_evaluate_classifier,
            ("evaluate", "retrieval"): run_evaluate_retrieval, ("evaluate", "recommend"): run_evaluate_recommend}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    if getattr(args, "threads", None):
        from edurank.encoders import set_threads

        set_threads(args.threads)
    handler = HANDLERS.get((args.command, args.job) if hasattr(args, "job") else args.command)
    try:
        handler(args)  # type: ignore[misc]
    except InputError as err:
        print(f"edurank: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
