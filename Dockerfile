# edurank service image: CPU PyTorch, installed by the same scripts/setup.sh as the README's `make run`.
# Artifacts (retriever/, index/, reranker/ versions, see README) are mounted at /artifacts; a catalog can be
# mounted too and named with EDURANK_CATALOG. Without either, it serves the bundled sample catalog.
FROM python:3.11-slim

ENV HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VENV=/opt/edurank/.venv \
    EXTRAS="" \
    EDURANK_HOST=0.0.0.0 \
    EDURANK_PORT=8000 \
    EDURANK_ARTIFACTS=/artifacts

WORKDIR /opt/edurank
# One COPY of the build context (.dockerignore leaves out tests, benches, artifacts and caches): a list of
# packages drifted from pyproject's (the ONNX backends' folder was missing).
COPY . .
RUN bash scripts/setup.sh

RUN useradd --create-home --uid 10001 edurank && mkdir -p /artifacts && chown edurank /artifacts
USER edurank
VOLUME ["/artifacts"]
EXPOSE 8000
# Readiness, not liveness: a container whose models failed to load is unhealthy (urlopen raises on a 503).
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["/opt/edurank/.venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['EDURANK_PORT']}/ready\", timeout=4)"]
CMD ["/opt/edurank/.venv/bin/edurank", "serve"]
