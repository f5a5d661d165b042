"""Where the indexing job embeds the catalog: in this process (`local`), or on Ray (`ray`), where Ray Data
splits the texts into batches and `map_batches` runs them on a pool of encoder actors, one model each.

On one machine Ray starts locally; given an address (`ray://head:10001` or `auto`) it runs on that cluster,
whose workers must see the encoder's directory at the same path (a shared or synced folder) and have
edurank installed. Both engines return the same vectors (row i = text i), so everything after the
embedding (FAISS, the lexical index, the manifest) is the same code.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edurank.errors import InputError
from edurank.retriever.config import ENGINES as ENGINES
from edurank.retriever.model import BiEncoder

log = logging.getLogger(__name__)


class EncoderActor:
    """A Ray actor holding one encoder: texts in, vectors out, with each text's row carried through."""

    def __init__(self, path: str, max_tokens: int) -> None:
        self.encoder = BiEncoder.load(path, max_tokens)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode([str(text) for text in batch["text"]], batch_size=len(batch["text"]))
        return {"row": batch["row"], "vector": vectors}


def embed_with_ray(encoder: BiEncoder, texts: list[str], batch_size: int, actors: int,
                   address: str | None = None) -> np.ndarray:
    """The texts' vectors, computed by `actors` encoder actors on Ray (started locally without `address`)."""
    try:
        import ray
    except ImportError as err:
        raise InputError("--engine ray needs Ray: pip install 'edurank[ray]'") from err
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        # longest first, as the local engine batches: texts of similar length share a batch and pad little
        order = np.argsort([-len(text) for text in texts], kind="stable")
        rows: list[dict[str, Any]] = [{"row": int(i), "text": texts[i]} for i in order]
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // batch_size, 4 * actors)))
        embedded = dataset.map_batches(EncoderActor, fn_constructor_kwargs={"path": str(encoder.path),
                                                                            "max_tokens": encoder.max_tokens},
                                       batch_size=batch_size, concurrency=actors, batch_format="numpy")
        vectors = np.empty((len(texts), encoder.dimension), dtype=np.float32)
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            vectors[batch["row"]] = np.stack(batch["vector"])
        return vectors
    finally:
        if started_here:
            ray.shutdown()
