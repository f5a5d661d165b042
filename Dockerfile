# syntax=docker/dockerfile:1
# edurank service image: CPU PyTorch, installed by the same scripts/setup.sh as the README's `make run`.
# Artifacts (retriever/, index/, reranker/ versions, see README) are mounted at /artifacts; a catalog can be
# mounted too and named with EDURANK_CATALOG. Without either, it serves the bundled sample catalog.
# Build arguments: BASE, an image with Python 3.11 (the torch wheel is cp311; `make image` passes a Debian
# bookworm base made with mmdebstrap where no registry can be reached); TORCH_INDEX, where the CPU torch comes
# from (PyTorch's CPU index by default, or a folder of wheels mounted into the build). A secret `ca` (a CA
# bundle) is handed to pip behind a TLS-inspecting proxy, for the build only: it is not kept in the image.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

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
# LightGBM's OpenMP runtime (python:3.11-slim lacks it) and the service's user
RUN if ! ldconfig -p | grep -q libgomp.so.1; then \
        apt-get update -q && apt-get install -y -q --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --create-home --uid 10001 edurank && mkdir -p /artifacts && chown edurank /artifacts
# Dependencies first, from pyproject.toml alone: this layer stays cached while only the sources change.
COPY pyproject.toml ./
COPY scripts/setup.sh scripts/
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; bash scripts/setup.sh deps
# Then one COPY of the build context (.dockerignore leaves out tests, benches, artifacts and caches): a list
# of packages drifted from pyproject's (the ONNX backends' folder was missing).
COPY . .
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; bash scripts/setup.sh \
    && chmod a+rx scripts/image/entrypoint.sh

USER edurank
VOLUME ["/artifacts"]
EXPOSE 8000
# Readiness, not liveness: a container whose models failed to load is unhealthy (urlopen raises on a 503);
# asked on loopback unless EDURANK_HOST names one address (the service listens only there then).
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["/opt/edurank/.venv/bin/python", "-c", "import os, urllib.request; h = os.environ.get('EDURANK_HOST', ''); h = '127.0.0.1' if h in ('', '0.0.0.0', '::') else h; h = f'[{h}]' if ':' in h else h; urllib.request.urlopen(f\"http://{h}:{os.environ['EDURANK_PORT']}/ready\", timeout=4)"]
ENTRYPOINT ["/opt/edurank/scripts/image/entrypoint.sh"]
CMD ["/opt/edurank/.venv/bin/edurank", "serve"]
