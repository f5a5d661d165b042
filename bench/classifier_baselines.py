"""Baselines for misconception classification, 5-fold out-of-fold MAP@3 on a MAP-style CSV: the three
most frequent labels per (question, answer) in the training folds, and TF-IDF + logistic regression over
the prompt text with labels masked to those seen for the question and to the answer's correctness.

    .venv/bin/python bench/classifier_baselines.py ../shared/data/map/train.csv [--save-oof tfidf_oof.parquet]

`--save-oof` writes the TF-IDF model's masked OOF probabilities (row_id, probabilities over the sorted label
list) in the layout of a classifier's oof.parquet, so `bench/classifier_scores.py --blend-with` can mix them.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_union

from edurank.classifier.data import ANSWER, EXPLANATION, LABEL, QUESTION, QUESTION_TEXT, ROW, load_responses
from edurank.classifier.evaluation import single_label_map
from edurank.classifier.prompts import QuestionBook, build_prompt
from edurank.folds import stratified_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--save-oof", type=Path, default=None, help="parquet of the TF-IDF model's OOF probabilities")
    args = parser.parse_args()
    frame = load_responses(args.data)
    labels = frame[LABEL].to_numpy()
    folds = stratified_folds(labels, args.folds)
    ranked_frequency: list[list[str]] = [[] for _ in range(len(frame))]
    ranked_tfidf: list[list[str]] = [[] for _ in range(len(frame))]
    vocabulary = sorted(set(labels))
    oof = np.zeros((len(frame), len(vocabulary)), dtype=np.float32)
    started = time.perf_counter()
    for fold in range(args.folds):
        train, valid = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        book = QuestionBook.fit(frame[train])
        counts: dict[tuple[str, str], Counter[str]] = {}
        for question, answer, label in frame[train].select(QUESTION, ANSWER, LABEL).iter_rows():
            counts.setdefault((question, answer), Counter())[label] += 1
        prompts = [build_prompt(book, q, t, a, e) for q, t, a, e in
                   frame.select(QUESTION, QUESTION_TEXT, ANSWER, EXPLANATION).iter_rows()]
        vectorizer = make_union(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True,
                                                max_features=100_000))
        features = vectorizer.fit_transform([prompts[i] for i in train])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=10.0, max_iter=300).fit(features, labels[train])
        columns = [vocabulary.index(c) for c in model.classes_]
        probabilities = model.predict_proba(vectorizer.transform([prompts[i] for i in valid]))
        for row, p in zip(valid, probabilities, strict=True):
            question, answer = frame[QUESTION][int(row)], frame[ANSWER][int(row)]
            ranked_frequency[row] = [lab for lab, _ in counts.get((question, answer), Counter()).most_common(3)]
            order = np.argsort(-p)
            allowed = book.allowed(question, answer, model.classes_)
            ranked_tfidf[row] = [model.classes_[i] for i in order if allowed[i]][:3]
            masked = np.where(allowed, p, 0.0)
            oof[row, columns] = masked / max(masked.sum(), 1e-12)
        print(f"fold {fold}: frequency {single_label_map(labels[valid], [ranked_frequency[r] for r in valid]):.4f}, "
              f"tf-idf + LR {single_label_map(labels[valid], [ranked_tfidf[r] for r in valid]):.4f}", flush=True)
    print(f"{args.folds}-fold OOF MAP@3 over {len(frame)} rows: frequency per (question, answer) "
          f"{single_label_map(labels, ranked_frequency):.4f}, "
          f"TF-IDF + LR (masked) {single_label_map(labels, ranked_tfidf):.4f}; "
          f"{time.perf_counter() - started:.0f} s")
    if args.save_oof:
        pl.DataFrame({ROW: frame[ROW], "covered": [True] * len(frame), "probabilities": oof.tolist()}) \
            .write_parquet(args.save_oof)
        print(f"wrote {args.save_oof}")


if __name__ == "__main__":
    main()
