"""The essay scorer's options, light to import: its window layout, the fast path's config and the poolings,
without torch, transformers or scikit-learn, so the CLI builds its parser without them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edurank.errors import InputError
from edurank.options import option

POOLINGS = ("mean", "attention", "weighted-layer")  # how a window's tokens become one vector (essays/model.py)


@dataclass(frozen=True)
class WindowSpec:
    """Overlapping token windows over an essay (essays/windows.py cuts them)."""

    max_tokens: int = option(256, "window length, special tokens included", minimum=8)
    stride: int = option(192, "tokens between window starts", minimum=1)

    def __post_init__(self) -> None:
        if self.max_tokens < 8 or not 0 < self.stride <= self.max_tokens - 2:
            raise ValueError(f"windows of {self.max_tokens} tokens need 0 < stride <= {self.max_tokens - 2}, "
                             f"got {self.stride}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FastConfig:
    """The fast path's features and regressors (essays/fast.py)."""

    layers: tuple[int, ...] = option((2, 4, 6), "hidden states averaged into the features (0 = embeddings)")
    dense_model: str = option("ridge", "regressor of the dense features", choices=("ridge", "svr"))
    svr_c: float = option(1.0, "C of the SVR (--dense-model svr)")
    ridge_alpha: float = option(2000.0, "alpha of the dense ridge (~1,200 features)")
    tfidf_alpha: float = option(2.0, "alpha of the TF-IDF ridge")
    windows: WindowSpec = option(factory=WindowSpec, cli=False)  # the job's windows, set by EssayConfig

    def __post_init__(self) -> None:
        if self.dense_model not in ("svr", "ridge"):
            raise InputError(f"dense model '{self.dense_model}': choose svr or ridge")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "layers": list(self.layers), "windows": self.windows.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FastConfig:
        return cls(**{**values, "layers": tuple(values["layers"]), "windows": WindowSpec(**values["windows"])})
