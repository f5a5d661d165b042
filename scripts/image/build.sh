#!/usr/bin/env bash
# `make image`: builds the repository's Dockerfile with podman, in Docker's format (podman's own OCI format
# drops the HEALTHCHECK). Its base: $BASE when given, else one made by base.sh where mmdebstrap is installed
# (no registry image can be pulled on this project's machines), else the Dockerfile's python:3.11-slim.
# Its torch: $TORCH_INDEX when given, else a local CPU wheel where pip's find-links hold one (mounted into the
# build), else PyTorch's CPU index. The machine's CA bundle goes to pip as a build secret (not into the image).
# Usage: scripts/image/build.sh [TAG] (default edurank:latest); prints the tag when built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
tag=${1:-edurank:latest}
args=(--format docker --tag "$tag")

base=${BASE:-}
if [ -z "$base" ] && command -v mmdebstrap >/dev/null; then
    base=$(bash "$here/base.sh")
fi
[ -z "$base" ] || args+=(--build-arg "BASE=$base")

if [ -n "${TORCH_INDEX:-}" ]; then
    args+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
else
    links=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p")
    for dir in $links ${PIP_FIND_LINKS:-}; do
        if compgen -G "$dir/torch-2.13.0+cpu-cp311-*.whl" >/dev/null; then
            args+=(--volume "$dir:/wheels:ro" --build-arg TORCH_INDEX=/wheels)
            break
        fi
    done
fi

ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ ! -f "$ca" ] || args+=(--secret "id=ca,src=$ca")

podman build "${args[@]}" . >&2
echo "$tag"
