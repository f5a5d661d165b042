"""edurank: retrieve-and-rank for education content.

The package root and its ground layer, what every other part may import and which imports none of them:
versioned artifacts, options, errors, timing, row folds, encoder loading and cutting, plots, the torch /
ONNX Runtime backends, the feedback store. The model families (edurank.retriever, .reranker, .essays,
.classifier), the recommend pipeline (.pipelines), the jobs (.training) and the entry points (.cli, .service)
are mapped in from the repository's top-level folders (pyproject's package-dir); docs/architecture.md draws the
layers.
"""

from __future__ import annotations

import os
from pathlib import Path

# Models load from local directories only: a hub download fails on air-gapped servers anyway, and an
# explicit offline flag turns a silent network wait into an immediate, clear error.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"

# 200 original items in en/es/fr/de: what the demo and the service serve when given no catalog
SAMPLE_CATALOG = Path(__file__).parent / "sample_catalog"
