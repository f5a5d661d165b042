"""edurank: retrieve-and-rank for education content.

Shared core that belongs to no single job: the CLI, versioned artifacts, encoder loading, errors.
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
