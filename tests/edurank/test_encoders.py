from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edurank.encoders import bundled_model_path, fingerprint, model_path, pin_request_thread, set_threads
from edurank.errors import InputError


def test_bundled_model_is_the_default() -> None:
    assert model_path(None) == bundled_model_path() == model_path("bundled")
    assert (bundled_model_path() / "model.safetensors").is_file()


def test_fingerprint_is_stable_and_needs_weights(tmp_path: Path) -> None:
    assert fingerprint(bundled_model_path()) == fingerprint(bundled_model_path())
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="no weights file"):
        fingerprint(tmp_path)


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such directory"):
        model_path(tmp_path / "nope")


def test_one_setting_sizes_every_thread_pool_and_onnx_runtime_does_not_spin(tmp_path: Path) -> None:
    """torch, FAISS, ONNX Runtime and LightGBM (small predictions on one thread) from one `set_threads` (FAISS
    apart where asked); ONNX Runtime's idle threads sleep unless asked to spin, so they leave the cores to the
    stages after it."""
    import faiss
    import onnx
    import torch
    from onnx import TensorProto, helper

    from edurank.backends.config import POOLS
    from edurank.backends.onnx import OnnxSession
    from edurank.reranker.lightgbm.model import PARALLEL_ROWS, predict_threads

    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["output"])], "identity",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, None])],
                              [helper.make_tensor_value_info("output", TensorProto.INT64, [None, None])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "model.onnx")
    before = torch.get_num_threads(), POOLS.threads, POOLS.spin
    try:
        set_threads(1)
        assert torch.get_num_threads() == faiss.omp_get_max_threads() == POOLS.threads == 1
        options = OnnxSession.open(tmp_path / "model.onnx").session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert predict_threads(80) == 1 and predict_threads(PARALLEL_ROWS) == 1
        set_threads(2, spin=True, request_threads=1)  # the service: FAISS and BLAS run one request's work
        searched: list[int] = []
        request = threading.Thread(target=lambda: (pin_request_thread(), searched.append(faiss.omp_get_max_threads())))
        request.start()
        request.join()
        assert torch.get_num_threads() == 2 and searched == [1]
        spinning = OnnxSession.open(tmp_path / "model.onnx").session.get_session_options()
        assert spinning.intra_op_num_threads == 2 and predict_threads(80) == 1 and predict_threads(PARALLEL_ROWS) == 2
        assert spinning.get_session_config_entry("session.inter_op.allow_spinning") == "1"
    finally:
        set_threads(before[0], before[2])
