#!/usr/bin/env bash
# Creates the project venv and installs edurank into it. torch==2.13.0 goes in first, a CPU build: installing
# it before anything that depends on torch stops pip from pulling CUDA builds (PyPI's torch 2.13.0 is one).
# TORCH_INDEX says where that CPU torch comes from: a package index URL (the image's default is PyTorch's CPU
# index), a folder of wheels, or unset (pip's own configuration: this project's machines find a local CPU wheel).
# EXTRAS picks optional dependencies ("dev" for tests and lint; the Docker image sets it empty).
# `setup.sh deps` stops after torch and the dependencies pyproject.toml declares: it needs no sources, so the
# image caches that layer until pyproject.toml changes; plain `setup.sh` installs edurank too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS-dev}
TORCH_INDEX=${TORCH_INDEX:-}
if [ -d "$TORCH_INDEX" ]; then
    torch_from=(--find-links "$TORCH_INDEX")
elif [ -n "$TORCH_INDEX" ]; then
    torch_from=(--index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple)
else
    torch_from=()
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0 "${torch_from[@]}"
if [ "${1:-}" = deps ]; then
    requirements=$(mktemp)
    "$VENV/bin/python" - "$EXTRAS" >"$requirements" <<'PY'
import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = [name for name in sys.argv[1].split(",") if name]
print("\n".join(project["dependencies"] + [d for name in extras for d in project["optional-dependencies"][name]]))
PY
    "$VENV/bin/python" -m pip install -q -r "$requirements"
    rm -f "$requirements"
    echo "edurank's dependencies installed in $VENV"
    exit 0
fi
"$VENV/bin/python" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
echo "edurank installed in $VENV"
