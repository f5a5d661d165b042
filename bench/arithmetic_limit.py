"""The arithmetic limit: FLOPs per item of a bi-encoder at a catalog's mean token length, against this CPU's
measured matmul rate in fp32 (torch) and int8 (ONNX Runtime's MatMulInteger, u8 x s8, as dynamic
quantisation runs it), so each measured throughput is also a fraction of what the hardware can do.

    .venv/bin/python bench/arithmetic_limit.py --catalog ../shared/data/curriculum \\
        --rate torch=52.1 --rate onnx-int8=111.5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from edurank.retriever.catalog import load_catalog
from edurank.retriever.model import BiEncoder
from edurank.retriever.texts import content_texts

ROWS = 4096  # a batch of 32 texts x 128 tokens, as the indexing job feeds the FFN


def gemm_shapes(hidden: int, intermediate: int) -> list[tuple[int, int]]:
    """(k, n) of a transformer layer's weight matmuls: Q, K, V, output, FFN in and out."""
    return [(hidden, hidden)] * 4 + [(hidden, intermediate), (intermediate, hidden)]


def flops_per_item(length: float, layers: int, hidden: int, intermediate: int) -> float:
    """2 x multiply-adds: the weight matmuls per token plus attention's two L x L x hidden products."""
    weights = sum(k * n for k, n in gemm_shapes(hidden, intermediate))
    return layers * (2 * length * weights + 4 * length * length * hidden)


def seconds_of(run: callable, repeat: int = 20) -> float:
    run()
    start = time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.perf_counter() - start) / repeat


def fp32_rate(shapes: list[tuple[int, int]]) -> float:
    pairs = [(torch.randn(ROWS, k), torch.randn(k, n)) for k, n in shapes]
    flops = sum(2 * ROWS * k * n for k, n in shapes)
    return flops / seconds_of(lambda: [a @ b for a, b in pairs])


def int8_rate(shapes: list[tuple[int, int]], threads: int) -> float:
    rng = np.random.default_rng(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    total = 0.0
    for k, n in shapes:
        weights = rng.integers(-127, 127, (k, n)).astype(np.int8).tobytes()
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "gemm",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [ROWS, k])],
            [helper.make_tensor_value_info("y", TensorProto.INT32, [ROWS, n])],
            [helper.make_tensor("b", TensorProto.INT8, [k, n], weights, raw=True)])
        # IR 10 (opset 17): what every onnxruntime of the last years reads
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        a = rng.integers(0, 255, (ROWS, k)).astype(np.uint8)
        total += seconds_of(lambda s=session, a=a: s.run(None, {"a": a}))
    return sum(2 * ROWS * k * n for k, n in shapes) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--rate", action="append", default=[], metavar="NAME=ITEMS_PER_S",
                        help="a measured throughput to place against the limit (repeatable)")
    args = parser.parse_args()

    encoder = BiEncoder.load(args.model)
    config = encoder.model[0].auto_model.config
    tokenizer = encoder.embedder.tokenizer
    texts = content_texts(load_catalog(args.catalog), encoder.builder)
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=encoder.max_tokens)["input_ids"]]
    length = float(np.mean(lengths))
    per_item = flops_per_item(length, config.num_hidden_layers, config.hidden_size, config.intermediate_size)
    shapes = gemm_shapes(config.hidden_size, config.intermediate_size)
    threads = torch.get_num_threads()
    fp32, int8 = fp32_rate(shapes), int8_rate(shapes, threads)
    print(f"mean tokens per item {length:.1f}; {per_item / 1e9:.2f} GFLOP per item; {threads} threads")
    print(f"matmul rate at the model's shapes: fp32 {fp32 / 1e9:.0f} GFLOP/s -> limit {fp32 / per_item:.0f} items/s; "
          f"int8 {int8 / 1e9:.0f} GOP/s -> limit {int8 / per_item:.0f} items/s")
    for entry in args.rate:
        name, rate = entry.split("=")
        limit = int8 if "int8" in name else fp32
        print(f"  {name:<12} {float(rate):7.1f} items/s = {float(rate) * per_item / limit:.0%} of the "
              f"{'int8' if 'int8' in name else 'fp32'} matmul limit")


if __name__ == "__main__":
    main()
