"""The `edurank` command: training, indexing, evaluation and the demo, all scriptable.

Bad input exits with code 2 and one line saying what is wrong and where; usage errors do the same
(argparse's convention).

The parser is built from light modules only: every job's config dataclass lives in a `config` module that
imports nothing heavy (and serve's flags come from the service's pydantic Settings), so `edurank --help` and
every command's `-h` answer at once; a command's handler imports torch and the rest when it runs.
tests/cli/test_main.py checks that building the parser loads none of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edurank import SAMPLE_CATALOG, __version__
from edurank.backends.config import ExportConfig
from edurank.errors import InputError
from edurank.options import add_options, from_args
from edurank.retriever.config import IndexConfig
from edurank.training.config import (
    GROUP_BY_HELP,
    ClassifierConfig,
    DistilConfig,
    EssayConfig,
    QuickstartConfig,
    RankerConfig,
    RecommendConfig,
    RerankerConfig,
    RetrieverConfig,
)

DEMO_QUERIES = (
    ("Adding fractions with different denominators", None),
    ("Wie berechnet man das Volumen eines Quaders?", None),
    ("la fotosíntesis de las plantas", "es"),
)


DESCRIPTION = """\
edurank: retrieve-and-rank for education content (curriculum recommendations, essay scoring,
misconception classification). Train, index, export, evaluate and serve, all from here."""
FIRST_STEPS = """\
first steps:
  edurank demo                              index the bundled sample catalog and answer a few queries
  edurank quickstart --data ../shared/data  every model's CPU fast path on a data folder, then the service
  edurank COMMAND -h                        a command's options (train and evaluate: JOB -h)

Bad input exits with code 2 and one line saying what is wrong and where."""
BUNDLED = "bundled all-MiniLM-L6-v2"
CATALOG = ("--catalog", {"type": Path, "required": True, "help": "catalog dir (topics, content, correlations)"})
# job -> (help, its input arguments, its config class): every other flag comes from the config dataclass
TRAIN_JOBS: dict[str, tuple[str, list[tuple[str, dict[str, Any]]], type]] = {
    "retriever": ("bi-encoder with in-batch and mined hard negatives", [CATALOG], RetrieverConfig),
    "reranker": ("cross-encoder over stage 1's candidates, cross-fitted", [CATALOG, (
        "--retriever", {"action": "append", "required": True, "metavar": "DIR",
                        "help": "retriever(s) to mine candidates with; each topic is mined by one that never "
                                "trained on it (fold models from `train retriever --fold I`, or 'bundled')"})],
                 RerankerConfig),
    "ranker": ("LightGBM over hybrid candidates' features, cross-fitted; tunes the decision rule", [CATALOG, (
        "--retriever", {"action": "append", "required": True, "metavar": "DIR",
                        "help": "retriever(s) giving candidates and dense features; each topic goes to one that "
                                "never trained on it (fold models, or 'bundled')"})],
               RankerConfig),
    "recommend": ("the best recommend path in one resumable job: fold retrievers, the served retriever, its index, "
                  "the ranker (--with-cross-encoder: and the cross-encoder), published under --out as the service "
                  "reads them", [CATALOG], RecommendConfig),
    "essays": ("six-trait essay scorer: fast path, fine-tuned path, OOF blend", [(
        "--data", {"type": Path, "required": True, "help": "CSV: text_id, full_text and the six traits"})],
               EssayConfig),
    "classifier": ("misconception classifier: k-fold members bagged over folds and seeds, OOF MAP@3, likely "
                   "label errors", [(
                       "--data", {"type": Path, "required": True,
                                  "help": "CSV: row_id, QuestionId, QuestionText, MC_Answer, StudentExplanation, "
                                          "Category, Misconception"})],
                   ClassifierConfig),
}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads of torch, FAISS and ONNX Runtime (default: all cores)")


def add_folds(parser: argparse.ArgumentParser, fold_help: str) -> None:
    """--folds/--fold/--seed/--group-by/--hold-out-items, as training takes them, so both cut the same folds."""
    parser.add_argument("--folds", type=positive_int, default=5, help="topic folds, as the model was trained "
                        "with (default: 5)")
    parser.add_argument("--fold", type=int, default=None, help=fold_help)
    parser.add_argument("--seed", type=int, default=42, help="seed of the folds, as the model was trained with "
                        "(default: 42)")
    parser.add_argument("--group-by", default=None, metavar="KEY", help=GROUP_BY_HELP)
    parser.add_argument("--hold-out-items", type=float, default=0.0,
                        help="share of the fold's items held out with it (as the model was trained)")


def add_evaluation_set(parser: argparse.ArgumentParser, out: str) -> None:
    """--topics/--correlations/--fold/--out/--threads: which topics an evaluation scores, and where."""
    parser.add_argument("--topics", type=Path, default=None, help="evaluation topics (default: catalog's)")
    parser.add_argument("--correlations", type=Path, default=None,
                        help="evaluation correlations (default: catalog's)")
    add_folds(parser, "evaluate only this held-out fold (default: every topic with content)")
    parser.add_argument("--out", type=Path, default=Path(out), help=f"report dir (default: {out})")
    add_threads(parser)


def add_stored_evaluation(parser: argparse.ArgumentParser, what: str, out: str) -> None:
    """--model/--data/--out/--oof/--threads of evaluations that can read an artifact's stored OOF predictions."""
    parser.add_argument("--model", required=True, help=f"{what} artifact (a version dir or its root)")
    parser.add_argument("--data", type=Path, required=True, help="labelled CSV")
    parser.add_argument("--out", type=Path, default=Path(out), help=f"report dir (default: {out})")
    parser.add_argument("--oof", action="store_true",
                        help="report the artifact's stored out-of-fold predictions instead of predicting --data "
                             "(the figure for data it trained on)")
    add_threads(parser)


def subcommands(parser: argparse.ArgumentParser, dest: str, metavar: str) -> argparse._SubParsersAction:
    return parser.add_subparsers(dest=dest, required=True, metavar=metavar, title=f"{metavar.lower()}s",
                                 help=f"one of these; `{parser.prog} {metavar} -h` lists its options")


def command(group: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand whose own -h starts with the line its parent lists it by."""
    return group.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edurank", description=DESCRIPTION, epilog=FIRST_STEPS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"edurank {__version__}")
    commands = subcommands(parser, "command", "COMMAND")

    demo = command(commands, "demo", "index the bundled sample catalog and answer a few queries")
    demo.add_argument("--catalog", type=Path, default=SAMPLE_CATALOG,
                      help="catalog dir (default: the bundled sample catalog)")
    demo.add_argument("--model", default=None, help=f"encoder dir (default: {BUNDLED})")
    demo.add_argument("--out", type=Path, default=Path("artifacts/index/sample"),
                      help="index root, built when missing or stale (default: artifacts/index/sample)")
    demo.add_argument("-k", type=positive_int, default=5, help="results per query (default: 5)")
    add_threads(demo)

    train = subcommands(command(commands, "train", "train a model"), "job", "JOB")
    for job, (help_text, inputs, config) in TRAIN_JOBS.items():
        parser_ = command(train, job, help_text)
        for flag, kwargs in inputs:
            parser_.add_argument(flag, **kwargs)
        parser_.add_argument("--out", type=Path, required=True, help="artifacts root: each part's versions go "
                             "below it as the service reads them" if job == "recommend" else
                             "artifact root; the version goes below it")
        add_options(parser_.add_argument_group(f"{job} options"), config)
        add_threads(parser_)

    index = command(commands, "index", "batch offline indexing job: embed a catalog's content, build its FAISS "
                                       "(and lexical) index, publish a version")
    index.add_argument("--catalog", type=Path, required=True, help="catalog dir (topics, content, correlations)")
    index.add_argument("--model", default=None, help=f"encoder dir (default: {BUNDLED})")
    index.add_argument("--out", type=Path, required=True, help="index root; the version goes below it")
    add_options(index.add_argument_group("index options"), IndexConfig)
    add_threads(index)

    export = command(commands, "export", "a retriever, reranker, essay scorer or classifier as an ONNX Runtime "
                                         "artifact (fp32 or int8), checked against torch on a slice of --data "
                                         "before it is published")
    export.add_argument("--model", default=None, help="a trained artifact (its kind picks the export), or any "
                                                      "encoder dir as a retriever (default: bundled MiniLM)")
    export.add_argument("--data", "--catalog", type=Path, default=SAMPLE_CATALOG,
                        help="the agreement check's data: a catalog (retriever, reranker; default: the sample), "
                             "the essays CSV, the classifier's responses CSV")
    export.add_argument("--out", type=Path, required=True, help="export root; the version goes below it")
    add_options(export.add_argument_group("export options"), ExportConfig)
    add_threads(export)

    distil = command(commands, "distil", "one student model in place of a classifier's or essay scorer's "
                                         "ensemble, kept only when its out-of-fold figure stays within --max-delta")
    distil.add_argument("--teacher", required=True, help="the trained classifier or essay scorer artifact")
    distil.add_argument("--data", type=Path, required=True, help="the CSV the teacher was trained on")
    distil.add_argument("--out", type=Path, required=True, help="artifact root; the version goes below it")
    add_options(distil.add_argument_group("distil options"), DistilConfig)
    add_threads(distil)

    quickstart = command(commands, "quickstart", "every job's CPU fast path on a data folder laid out like "
                                                 "../shared/data, then the service with every endpoint")
    quickstart.add_argument("--data", type=Path, required=True, help="holds curriculum/ (LECR catalog), "
                            "fb3/train.csv (essays), map/train.csv (responses)")
    quickstart.add_argument("--out", type=Path, default=Path("artifacts"), help="artifacts root to publish into")
    add_options(quickstart.add_argument_group("quickstart options"), QuickstartConfig)
    add_threads(quickstart)

    search = command(commands, "search", "query an index with free text")
    search.add_argument("--index", type=Path, required=True, help="index root or version dir (`edurank index`)")
    search.add_argument("--model", default=None, help=f"the encoder the index was built with (default: {BUNDLED})")
    search.add_argument("--language", action="append", default=None,
                        help="only items in this language (repeat for several; default: all)")
    search.add_argument("--kind", action="append", default=None,
                        help="only items of this kind (repeat for several; default: all)")
    search.add_argument("-k", type=positive_int, default=10, help="results per query (default: 10)")
    search.add_argument("query", nargs="+", help="one or more queries, each answered on its own (quote a query of "
                                                 "several words)")

    evaluate = subcommands(command(commands, "evaluate", "evaluate a model"), "job", "JOB")
    retrieval = command(evaluate, "retrieval", "recall@k and MAP@25 over the whole catalog")
    retrieval.add_argument("--catalog", type=Path, required=True, help="catalog dir (topics, content, correlations)")
    retrieval.add_argument("--model", default=None, help=f"retriever dir (default: {BUNDLED})")
    add_evaluation_set(retrieval, "artifacts/reports/retrieval")

    recommend = command(evaluate, "recommend", "mean F2 / precision / recall of retrieve -> rerank -> rule")
    recommend.add_argument("--catalog", type=Path, required=True, help="catalog dir (topics, content, correlations)")
    recommend.add_argument("--retriever", default=None, help="retriever dir (default: bundled)")
    recommend.add_argument("--ranker", default=None, help="LightGBM ranker (hybrid candidates, its tuned rule)")
    recommend.add_argument("--reranker", default=None, help="cross-encoder (dense candidates, its tuned rule); with "
                           "--ranker: the one whose logits its cross group reads")
    recommend.add_argument("--candidates", type=positive_int, default=None,
                           help="top-N to rerank (default: what the reranker was trained on)")
    add_evaluation_set(recommend, "artifacts/reports/recommend")

    essays = command(evaluate, "essays", "MCRMSE and per-trait RMSE of an essay scorer on a scored CSV")
    add_stored_evaluation(essays, "essay scorer", "artifacts/reports/essays")
    classifier = command(evaluate, "classifier", "MAP@3, accuracy@1, per-category figures, confusion matrix and "
                                                 "likely label errors of a classifier on a labelled CSV")
    add_stored_evaluation(classifier, "classifier", "artifacts/reports/classifier")

    feedback = subcommands(command(commands, "feedback", "reviewers' and platforms' decisions on recommended items"),
                           "job", "ACTION")
    export_feedback = command(feedback, "export", "write the decisions as LECR correlations (accepted and imported "
                                                  "items), rejected pairs and an audit file of every decision")
    export_feedback.add_argument("--db", default=None, help="the feedback database: a SQLite file or a "
                                 "postgresql:// URL (default: EDURANK_FEEDBACK_DB, else "
                                 "$EDURANK_ARTIFACTS/feedback.sqlite, where `edurank serve` records them)")
    export_feedback.add_argument("--out", type=Path, required=True,
                                 help="folder to write correlations.csv, rejected.csv and decisions.csv into")

    add_serve(commands)
    return parser


def add_serve(commands: argparse._SubParsersAction) -> None:
    """`serve`: its flags and the settings listed under them come from the service's Settings (pydantic, no
    FastAPI or torch), where each is declared once; a flag overrides its EDURANK_* variable."""
    from edurank.service.settings import Settings

    def described(name: str) -> str:
        field = Settings.model_fields[name]
        default = field.get_default(call_default_factory=True)
        shown = "the bundled sample" if default == SAMPLE_CATALOG else default
        return (field.description or "") + ("" if default in (None, "", []) else f" (default: {shown})")

    width = min(shutil.get_terminal_size().columns - 2, 118)  # as argparse wraps the rest
    settings = "\n".join(textwrap.fill(described(name), width, initial_indent=f"  EDURANK_{name.upper():<22}  ",
                                       subsequent_indent=" " * 34) for name in Settings.model_fields)
    serve = commands.add_parser("serve", help="start the HTTP service (settings: EDURANK_* variables)",
                                description="Start the HTTP service; its settings come from EDURANK_* variables.",
                                epilog=f"settings (environment variables):\n{settings}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default=None, help=described("host") + "; overrides EDURANK_HOST")
    serve.add_argument("--port", type=int, default=None, help=described("port") + "; overrides EDURANK_PORT")
    serve.add_argument("--replicas", type=int, default=None,
                       help=described("replicas") + "; overrides EDURANK_REPLICAS")
    serve.add_argument("--ray-address", default=None, help=described("ray_address") + "; overrides EDURANK_RAY_ADDRESS")
    serve.add_argument("--trusted-proxies", default=None,
                       help=described("trusted_proxies") + "; overrides EDURANK_TRUSTED_PROXIES")


def run_demo(args: argparse.Namespace) -> None:
    from edurank.retriever.catalog import load_catalog
    from edurank.retriever.index_job import build_index, load_index, search_text
    from edurank.retriever.model import BiEncoder

    encoder = BiEncoder.load(args.model)
    catalog = load_catalog(args.catalog)
    try:
        index = load_index(args.out, encoder)
        if index.manifest is None or index.manifest.data["hash"] != catalog.data_hash:
            raise InputError("the catalog changed since the index was built")
        print(f"using index {args.out} ({index.manifest.details['count']} items)")
    except InputError:  # none yet, another model's, or a stale one: (re)build it
        path = build_index(encoder, catalog, args.out)
        index = load_index(path, encoder)
        details = index.manifest.details if index.manifest is not None else {}
        print(f"built index {path} ({details.get('count')} items, {details.get('items_per_second')} items/s)")
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


def run_train(args: argparse.Namespace) -> None:
    """Build the job's config from its flags and train; prints the published version's path."""
    config = from_args(TRAIN_JOBS[args.job][2], args)
    if args.job == "retriever":
        from edurank.retriever.catalog import load_catalog
        from edurank.training.retriever import train_retriever

        print(train_retriever(load_catalog(args.catalog), args.out, config))
    elif args.job == "reranker":
        from edurank.retriever.catalog import load_catalog
        from edurank.training.reranker import train_reranker

        print(train_reranker(load_catalog(args.catalog), args.retriever, args.out, config))
    elif args.job == "ranker":
        from edurank.retriever.catalog import load_catalog
        from edurank.training.ranker import train_ranker

        print(train_ranker(load_catalog(args.catalog), args.retriever, args.out, config))
    elif args.job == "recommend":
        from edurank.retriever.catalog import load_catalog
        from edurank.training.recommend import train_recommend

        print(train_recommend(load_catalog(args.catalog), args.out, config))
    elif args.job == "essays":
        from edurank.training.essays import train_essays

        print(train_essays(args.data, args.out, config))
    else:
        from edurank.training.classifier import train_classifier

        print(train_classifier(args.data, args.out, config))


def run_evaluate_essays(args: argparse.Namespace) -> None:
    from edurank.essays.evaluation import evaluate_essays, write_report

    report, truth, predicted = evaluate_essays(args.model, args.data, args.oof)
    json_path, png_path = write_report(report, truth, predicted, args.out)
    print(json.dumps(report, indent=2))
    print(f"wrote {json_path} and {png_path}")


def run_evaluate_classifier(args: argparse.Namespace) -> None:
    from edurank.classifier.evaluation import evaluate_classifier, write_report

    report, frame, probabilities, labels = evaluate_classifier(args.model, args.data, args.oof)
    paths = write_report(report, frame, probabilities, labels, args.out)
    print(json.dumps(report, indent=2))
    print(f"wrote {', '.join(map(str, paths))}")


def run_index(args: argparse.Namespace) -> None:
    from edurank.retriever.catalog import load_catalog
    from edurank.retriever.index_job import build_index
    from edurank.retriever.model import BiEncoder

    catalog = load_catalog(args.catalog)
    print(build_index(BiEncoder.load(args.model), catalog, args.out, from_args(IndexConfig, args)))


def run_export(args: argparse.Namespace) -> None:
    from edurank.artifacts import MANIFEST, Manifest
    from edurank.classifier.export import export_classifier
    from edurank.encoders import model_path
    from edurank.essays.export import export_essays
    from edurank.reranker.cross_encoder.export import export_reranker
    from edurank.retriever.catalog import load_catalog
    from edurank.retriever.export import export_retriever

    path = model_path(args.model)
    kind = Manifest.read(path).kind if (path / MANIFEST).is_file() else "retriever"  # any encoder dir embeds
    exporters = {"retriever": lambda: export_retriever(path, load_catalog(args.data), args.out, config),
                 "reranker": lambda: export_reranker(path, load_catalog(args.data), args.out, config),
                 "essays": lambda: export_essays(path, args.data, args.out, config),
                 "classifier": lambda: export_classifier(path, args.data, args.out, config)}
    if kind not in exporters:
        raise InputError(f"--model {path}: a {kind} artifact has no ONNX export (exported: {', '.join(exporters)})")
    config = from_args(ExportConfig, args)
    print(exporters[kind]())


def run_distil(args: argparse.Namespace) -> None:
    from edurank.artifacts import MANIFEST, Manifest
    from edurank.encoders import model_path
    from edurank.training.classifier import distil_classifier
    from edurank.training.essays import distil_essays

    path = model_path(args.teacher)
    kind = Manifest.read(path).kind if (path / MANIFEST).is_file() else None
    students = {"classifier": distil_classifier, "essays": distil_essays}
    if kind not in students:
        raise InputError(f"--teacher {path}: a {kind or 'plain model'} has no distillation (distilled: "
                         f"{', '.join(students)})")
    print(students[kind](path, args.data, args.out, from_args(DistilConfig, args)))


def run_search(args: argparse.Namespace) -> None:
    from edurank.retriever.index_job import load_index, search_text
    from edurank.retriever.model import BiEncoder

    encoder = BiEncoder.load(args.model)
    index = load_index(args.index, encoder)
    for query, frame in zip(args.query, search_text(index, encoder, args.query, args.k, args.language, args.kind),
                            strict=True):
        print(f"> {query}")
        print(frame)


def run_evaluate_retrieval(args: argparse.Namespace) -> None:
    from edurank.retriever.catalog import load_catalog
    from edurank.retriever.evaluation import evaluate_retrieval, write_report
    from edurank.retriever.model import BiEncoder
    from edurank.retriever.topic_folds import split_of, split_topics

    catalog = load_catalog(args.catalog, args.topics, args.correlations)
    topics = split_topics(catalog, fold=args.fold, **split_of(args))[1] if args.fold is not None else None
    encoder = BiEncoder.load(args.model)
    report = {"model": str(encoder.path), "fold": args.fold, **evaluate_retrieval(encoder, catalog, topics)}
    json_path, png_path = write_report(report, args.out)
    print(json.dumps(report, indent=2))
    print(f"wrote {json_path} and {png_path}")


def run_evaluate_recommend(args: argparse.Namespace) -> None:
    from edurank.artifacts import resolve
    from edurank.pipelines.evaluation import evaluate_recommend, write_report
    from edurank.pipelines.recommend import Recommender, ranker_companion
    from edurank.reranker.cross_encoder.model import Reranker
    from edurank.reranker.lightgbm.model import Ranker
    from edurank.retriever.catalog import load_catalog
    from edurank.retriever.index_job import in_memory_index
    from edurank.retriever.model import BiEncoder
    from edurank.retriever.topic_folds import seen_topics, split_of, split_topics

    if args.ranker is None and args.reranker is None:
        raise InputError("evaluate recommend: give --ranker or --reranker (both: a ranker that reads that "
                         "cross-encoder's logits)")
    catalog = load_catalog(args.catalog, args.topics, args.correlations)
    topics = split_topics(catalog, fold=args.fold, **split_of(args))[1] if args.fold is not None else None
    encoder = BiEncoder.load(args.retriever)
    reranker = Reranker.load(args.reranker) if args.reranker else None
    ranker = Ranker.load(args.ranker) if args.ranker else None
    problem = ranker.cross_encoder_problem(reranker.fingerprint if reranker else None) if ranker else None
    if problem:
        raise InputError(f"--ranker {args.ranker}: {problem} (give it with --reranker)")
    companion = ranker_companion(ranker) if ranker else None
    if topics is not None:
        checked = [("retriever", encoder.path)] + ([("reranker", reranker.path)] if reranker else []) + \
            ([("ranker", resolve(args.ranker))] if ranker else []) + \
            ([("companion encoder", companion.path)] if companion else [])
        for name, path in checked:
            try:
                seen = len(seen_topics(path, catalog).intersection(topics))
            except InputError as err:
                logging.warning("cannot check that the fold is held out: %s", err)
                continue
            if seen:
                logging.warning("the %s trained on %d of the fold's %d topics: figures are not held-out",
                                name, seen, len(topics))
    index = in_memory_index(encoder, catalog, progress=True, companion=companion)
    trained_on = reranker.manifest.params.get("candidates", 32) if reranker and reranker.manifest else 32
    candidates = args.candidates or int(trained_on["dense"] if isinstance(trained_on, dict) else trained_on)
    recommender = Recommender(encoder, index, catalog.content, reranker, ranker=ranker, topics=catalog.topics,
                              companion=companion)
    report = {"retriever": str(encoder.path), "second_stage": str(args.ranker or args.reranker), "fold": args.fold,
              **evaluate_recommend(recommender, catalog, topics, candidates)}
    json_path, png_path = write_report(report, args.out)
    print(json.dumps({k: v for k, v in report.items() if k != "curve"}, indent=2))
    print(f"wrote {json_path} and {png_path}")


def run_quickstart(args: argparse.Namespace) -> None:
    from edurank.training.quickstart import quickstart, serving_settings

    config = from_args(QuickstartConfig, args)
    quickstart(args.data, args.out, config)
    if config.serve:
        from edurank.service.server import serve_with

        serve_with(**serving_settings(args.data, args.out))


def run_feedback_export(args: argparse.Namespace) -> None:
    from edurank.feedback import FeedbackStore, export_feedback
    from edurank.service.settings import load_settings

    with FeedbackStore.open(args.db or load_settings().feedback_target, create=False) as store:
        counts = export_feedback(store, args.out)
    print(f"wrote {args.out}: {counts['accepted']} accepted items over {counts['topics']} topics, "
          f"{counts['rejected']} rejected pairs, {counts['decisions']} current decisions")


def run_serve(args: argparse.Namespace) -> None:
    from edurank.service.server import serve_with

    flags = {"host": args.host, "port": args.port, "replicas": args.replicas, "ray_address": args.ray_address,
             "trusted_proxies": args.trusted_proxies}
    serve_with(**{name: value for name, value in flags.items() if value is not None})


HANDLERS = {"demo": run_demo, "index": run_index, "export": run_export, "distil": run_distil, "search": run_search,
            "serve": run_serve, "quickstart": run_quickstart, ("feedback", "export"): run_feedback_export,
            **{("train", job): run_train for job in TRAIN_JOBS},
            ("evaluate", "essays"): run_evaluate_essays, ("evaluate", "classifier"): run_evaluate_classifier,
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
    except OSError as err:  # a full disk, a read-only folder: what failed and where, not a traceback
        where = f": {err.filename}" if err.filename else ""
        print(f"edurank: error: {err.strerror or err}{where}; the job stopped without publishing what it was "
              "writing", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
