"""What `edurank export` is told, light to import: the backend names and `ExportConfig`, without onnxruntime,
torch or polars, so the CLI builds its parser without them (`edurank.backends.export` does the work)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from edurank.options import option

TORCH, ONNX, ONNX_INT8 = "torch", "onnx", "onnx-int8"
EXPORTED = (ONNX, ONNX_INT8)  # the backends `edurank export` writes


@dataclass
class Pools:
    """The thread pools of torch, FAISS, ONNX Runtime and LightGBM, sized together from one setting
    (`edurank.encoders.set_threads`), so the stages of one request do not oversubscribe the cores: `threads`
    per pool (default: one per core this process may use), and whether ONNX Runtime's idle threads spin
    waiting for its next call (off: they sleep, and leave the cores to the stages after the encoder)."""

    threads: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    spin: bool = False
    request_threads: int | None = None  # FAISS's and BLAS's, where they only run one request's work (None: threads)


POOLS = Pools()  # read when a session opens (ONNX Runtime) or a prediction runs (LightGBM)


@dataclass(frozen=True)
class ExportConfig:
    """`edurank export`'s options; each family's check reads the threshold that applies to it."""

    backend: str = option(ONNX_INT8, "onnx: fp32 ONNX Runtime, fused graph; onnx-int8: also int8 weights "
                                     "(dynamic quantisation, per channel)", choices=EXPORTED)
    check_items: int = option(512, "items of --data both backends run to check agreement: texts (retriever), "
                                   "pairs (reranker), essays, responses (classifier)", minimum=1)
    min_cosine: float = option(0.99, "retriever: refuse below this mean cosine to torch's vectors")
    min_rank_agreement: float = option(0.95, "reranker: refuse below this mean Spearman correlation per topic "
                                             "between torch's and the export's scores of the same candidates")
    max_metric_delta: float = option(0.005, "essays, classifier: refuse when MCRMSE rises (MAP@3 falls) by more "
                                            "than this against torch on the slice")
