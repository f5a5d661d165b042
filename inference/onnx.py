"""ONNX Runtime for the transformer trunks edurank serves: export, fusion, int8 quantisation, a session.

optimum (which sentence-transformers' own `backend="onnx"` needs) is not installable here, so the same three
steps use the tools it wraps: torch's ONNX exporter, onnxruntime's transformer optimiser (fuses attention,
layer norms and GELU) and its dynamic quantiser (int8 weights per channel, activations quantised at run time).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

TORCH, ONNX, ONNX_INT8 = "torch", "onnx", "onnx-int8"
EXPORTED = (ONNX, ONNX_INT8)  # the backends `edurank export` writes
ONNX_FILE = "model.onnx"
OPSET = 17


class _LastHiddenState(torch.nn.Module):
    """The trunk as the exporter sees it: named integer inputs in, last hidden states out."""

    def __init__(self, model: PreTrainedModel, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).last_hidden_state


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


def export_trunk(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, backend: str) -> None:
    """Write `model` (token ids -> last hidden states) to `path` for `backend` ('onnx' or 'onnx-int8'):
    exported with dynamic batch and length, fused by onnxruntime's optimiser, and for int8 quantised. `path`
    is inside the export job's staging directory, so the intermediate files beside it are never published."""
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    sample = tokenizer(["an example", "a longer example sentence"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "length"} for name in [*names, "last_hidden_state"]}
    raw, fused_path = path.with_suffix(".raw.onnx"), path.with_suffix(".fused.onnx")
    attention = model.config._attn_implementation
    model.set_attn_implementation("eager")  # the optimiser recognises (and fuses) eager attention, not SDPA
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's warnings about Python control flow on shapes
            # the TorchScript exporter: onnxruntime's optimiser fuses its attention graph, not yet the dynamo one's
            torch.onnx.export(_LastHiddenState(model.eval(), names), tuple(sample[n] for n in names), str(raw),
                              dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes)
        fused = optimize_model(str(raw), model_type="bert", num_heads=model.config.num_attention_heads,
                               hidden_size=model.config.hidden_size)
        fused.save_model_to_file(str(path if backend == ONNX else fused_path))
        if backend == ONNX_INT8:
            with quiet_root_logger():
                quantize_dynamic(fused_path, path, weight_type=QuantType.QInt8, per_channel=True,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        raw.unlink(missing_ok=True)
        fused_path.unlink(missing_ok=True)
        model.set_attn_implementation(attention)


class OnnxTrunk:
    """An exported trunk in an ONNX Runtime session: numpy features in, last hidden states out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: one per core, as torch does
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {n: np.asarray(features[n], dtype=np.int64) for n in self.inputs})[0]
