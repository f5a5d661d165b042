"""The fast CPU path: features from a frozen encoder plus text statistics, fed to classical regressors.

Two members, both cheap to fit once the features exist:
- `dense`: frozen-encoder layer means + text statistics -> standardised -> ridge (or SVR per trait);
- `tfidf`: word 1-2-grams and character 2-5-grams, TF-IDF weighted -> ridge.
A user without a GPU trains this in minutes; `edurank.training.essays` blends it with the fine-tuned path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import RegressorMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import Pipeline, make_pipeline, make_union
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from edurank.backends.base import load_runner
from edurank.backends.onnx import ONNX_FILE, TORCH, export_graph
from edurank.errors import InputError
from edurank.essays.backends import LayerMeans, OnnxLayerMeans, TorchLayerMeans
from edurank.essays.config import FastConfig
from edurank.essays.features import layer_embeddings, layer_means, text_statistics, whole_words
from edurank.essays.windows import Windows, make_windows

CONFIG = "fast_model.json"
ENCODER = "encoder"
MEMBERS = ("dense", "tfidf")


def dense_estimator(config: FastConfig) -> Pipeline:
    regressor: RegressorMixin = (MultiOutputRegressor(SVR(C=config.svr_c, epsilon=0.1))
                                 if config.dense_model == "svr" else Ridge(alpha=config.ridge_alpha))
    return make_pipeline(StandardScaler(), regressor)


def tfidf_estimator(config: FastConfig) -> Pipeline:
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    characters = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True,
                                 max_features=200_000)
    return make_pipeline(make_union(words, characters), Ridge(alpha=config.tfidf_alpha))


@dataclass
class FeatureExtractor:
    """Dense features of essays: frozen-encoder layer means over all windows, then the text statistics."""

    runner: LayerMeans  # the frozen encoder, or an export's graph computing the windows' layer means itself
    config: FastConfig

    @classmethod
    def load(cls, path: str | Path | None, config: FastConfig, backend: str = TORCH) -> FeatureExtractor:
        """For torch any base model argument (None: the bundled MiniLM), for an export its encoder directory."""
        return cls(load_runner(path, backend, lambda base: TorchLayerMeans.load(base, config.layers),
                               OnnxLayerMeans.load), config)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.runner.tokenizer

    @property
    def encoder(self) -> PreTrainedModel:
        """The frozen torch encoder, for training (on a GPU when there is one) and saving; an export has none."""
        if not isinstance(self.runner, TorchLayerMeans):
            raise InputError("an exported essay scorer cannot be exported again; give its source")
        return self.runner.encoder

    def windows(self, texts: Sequence[str]) -> Windows:
        return make_windows(self.tokenizer, texts, self.config.windows)

    def export(self, path: Path, backend: str) -> None:
        """The encoder as a graph of windows -> their layer means, with the tokenizer (`load` reads it back)."""
        encoder, layers = self.encoder, self.config.layers
        sample = {k: v for k, v in self.tokenizer(["an example", "a longer example text"], padding=True,
                                                  return_tensors="pt").items() if k in ("input_ids", "attention_mask")}
        path.mkdir(parents=True, exist_ok=True)
        export_graph(encoder, sample, path / ONNX_FILE, backend,
                     call=lambda model, **inputs: layer_means(model, inputs, layers), output_axes={0: "windows"})
        self.tokenizer.save_pretrained(str(path))

    def __call__(self, texts: Sequence[str], windows: Windows | None = None) -> np.ndarray:
        """(essays, features): the layer means, then the text statistics."""
        windows = windows or self.windows(texts)
        embeddings = layer_embeddings(self.runner, windows, self.tokenizer.pad_token_id)
        return np.hstack([embeddings, text_statistics(texts, self.vocabulary)])

    @functools.cached_property
    def vocabulary(self) -> set[str]:
        return whole_words(self.tokenizer)


@dataclass
class FastModel:
    """The fitted fast path: the extractor and one fitted estimator per member."""

    extractor: FeatureExtractor
    estimators: dict[str, Pipeline]

    @classmethod
    def fit(cls, extractor: FeatureExtractor, texts: Sequence[str], dense: np.ndarray, targets: np.ndarray) \
            -> FastModel:
        config = extractor.config
        return cls(extractor, {"dense": dense_estimator(config).fit(dense, targets),
                               "tfidf": tfidf_estimator(config).fit(list(texts), targets)})

    def predict(self, texts: Sequence[str], dense: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Raw scores per member; `dense` skips the encoder when the features are already computed."""
        dense = self.extractor(texts) if dense is None else dense
        return {"dense": self.estimators["dense"].predict(dense),
                "tfidf": self.estimators["tfidf"].predict(list(texts))}

    def save(self, path: Path, backend: str = TORCH) -> None:
        """The encoder (for an ONNX `backend`, exported as its layer-means graph), config and regressors."""
        path.mkdir(parents=True, exist_ok=True)
        if backend == TORCH:
            self.extractor.encoder.save_pretrained(path / ENCODER)
            self.extractor.tokenizer.save_pretrained(path / ENCODER)
        else:
            self.extractor.export(path / ENCODER, backend)
        (path / CONFIG).write_text(json.dumps(self.extractor.config.to_dict(), indent=2))
        for name, estimator in self.estimators.items():
            joblib.dump(estimator, path / f"{name}.joblib")

    @classmethod
    def load(cls, path: Path, backend: str = TORCH) -> FastModel:
        """Loads joblib pickles: only open artifacts you trust, as with any pickled model."""
        if not (path / CONFIG).is_file():
            raise InputError(f"{path}: no {CONFIG}; not a fast essay model")
        config = FastConfig.from_dict(json.loads((path / CONFIG).read_text()))
        return cls(FeatureExtractor.load(path / ENCODER, config, backend),
                   {name: joblib.load(path / f"{name}.joblib") for name in MEMBERS})
