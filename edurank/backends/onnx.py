"""ONNX Runtime for the transformer models edurank serves: export, fusion, int8 quantisation, a session.

optimum (which sentence-transformers' own `backend="onnx"` needs) is not installable here, so the same three
steps use the tools it wraps: torch's ONNX exporter, onnxruntime's transformer optimiser (fuses attention,
layer norms and GELU) and its dynamic quantiser (int8 weights per channel, activations quantised at run time).
Every model family exports a graph of its own (a bi-encoder's trunk, a cross-encoder with its head, an essay
regressor, a classifier's trunk and members) through `export_graph`.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from edurank.backends.config import EXPORTED as EXPORTED  # the backend names live with ExportConfig (light)
from edurank.backends.config import ONNX, ONNX_INT8, POOLS
from edurank.backends.config import TORCH as TORCH
from edurank.layers import module_config

ONNX_FILE = "model.onnx"
OPSET = 17


class _Graph(torch.nn.Module):
    """A model as the exporter sees it: named integer inputs in (positionally), one tensor out."""

    def __init__(self, module: torch.nn.Module, names: Sequence[str],
                 call: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.module, self.names, self.call = module, list(names), call

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.call(self.module, **dict(zip(self.names, inputs, strict=True)))


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantiser logs a line per tensor on the root logger; keep its warnings only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def eager_attention(module: torch.nn.Module) -> Iterator[PretrainedConfig]:
    """Every HF config inside `module` (layers copied out of an encoder keep one each) set to eager
    attention, which onnxruntime's optimiser recognises and fuses (SDPA it does not); yields one of them."""
    module_config(module)  # refuses a module without transformer layers
    configs = {id(c): c for m in module.modules() if isinstance(c := getattr(m, "config", None), PretrainedConfig)}
    before = {key: config._attn_implementation for key, config in configs.items()}
    for config in configs.values():
        config._attn_implementation = "eager"
    try:
        yield next(iter(configs.values()))
    finally:
        for key, config in configs.items():
            config._attn_implementation = before[key]


def export_graph(module: torch.nn.Module, sample: Mapping[str, torch.Tensor], path: Path, backend: str, *,
                 call: Callable[..., torch.Tensor], output_axes: Mapping[int, str]) -> None:
    """Write `call(module, **inputs)` to `path` for `backend` ('onnx' or 'onnx-int8'): inputs are `sample`'s
    names, with dynamic batch and length; the output's dynamic axes are `output_axes`. Exported, fused by
    onnxruntime's optimiser, and for int8 quantised. `path` is inside the export job's staging directory, so
    the intermediate files beside it are never published."""
    names = list(sample)
    axes = {name: {0: "batch", 1: "length"} for name in names} | {"output": dict(output_axes)}
    raw, fused_path = path.with_suffix(".raw.onnx"), path.with_suffix(".fused.onnx")
    modes = [(m, m.training) for m in module.modules()]  # each part's own mode (a wrapper may hold eval parts)
    with eager_attention(module) as config:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's warnings about Python control flow on shapes
                # the TorchScript exporter: onnxruntime's optimiser fuses its attention graph, not yet dynamo's
                torch.onnx.export(_Graph(module.eval(), names, call), tuple(sample[n] for n in names), str(raw),
                                  dynamo=False, opset_version=OPSET, input_names=names, output_names=["output"],
                                  dynamic_axes=axes)
            fused = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)
            fused.save_model_to_file(str(path if backend == ONNX else fused_path))
            if backend == ONNX_INT8:
                with quiet_root_logger():
                    quantize_dynamic(fused_path, path, weight_type=QuantType.QInt8, per_channel=True,
                                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            raw.unlink(missing_ok=True)
            fused_path.unlink(missing_ok=True)
            for part, training in modes:
                part.training = training


def sample_features(tokenizer: PreTrainedTokenizerBase, pairs: bool = False) -> dict[str, torch.Tensor]:
    """A tiny tokenised batch to trace with: the tokenizer's own input names (pairs give token_type_ids)."""
    first, second = ["an example", "a longer example sentence"], ["its pair", "a second one"]
    tokens = tokenizer(first, second if pairs else None, padding=True, return_tensors="pt")
    return {n: tokens[n] for n in ("input_ids", "attention_mask", "token_type_ids")
            if n in tokens and n in tokenizer.model_input_names}


def export_trunk(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, backend: str) -> None:
    """A bare encoder: token ids -> last hidden states (batch, length, hidden)."""
    export_graph(model, sample_features(tokenizer), path, backend,
                 call=lambda m, **inputs: m(**inputs).last_hidden_state, output_axes={0: "batch", 1: "length"})


class OnnxSession:
    """An exported graph in an ONNX Runtime session: integer features (numpy or torch) in, its output out."""

    def __init__(self, path: Path, threads: int | None = None, spin: bool = False) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: one per core, as torch does
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # ONNX Runtime's threads spin after each call by default, holding the cores the stages after the encoder
        # (FAISS, polars, LightGBM) need: on 2 cores that doubled them (bench/README.md, the served path)
        for pool in ("intra_op", "inter_op"):
            options.add_session_config_entry(f"session.{pool}.allow_spinning", "1" if spin else "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    @classmethod
    def open(cls, path: Path) -> OnnxSession:
        """A session sized as the other libraries' pools are (`POOLS`, set by `set_threads`)."""
        return cls(path, POOLS.threads, POOLS.spin)

    def __call__(self, features: Mapping[str, np.ndarray | torch.Tensor]) -> np.ndarray:
        return self.session.run(None, {n: np.asarray(features[n], dtype=np.int64) for n in self.inputs})[0]
