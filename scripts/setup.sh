#!/usr/bin/env bash
# Creates the project venv and installs edurank into it. torch==2.13.0 goes in first: it is the local
# CPU wheel, and installing it before anything that depends on torch stops pip from pulling CUDA builds.
# EXTRAS picks optional dependencies ("dev" for tests and lint; the Docker image sets it empty).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS-dev}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
echo "edurank installed in $VENV"
