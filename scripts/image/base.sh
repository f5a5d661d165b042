#!/usr/bin/env bash
# The image's base where no registry image can be pulled (this project's machines): Debian bookworm with its
# python3.11 (the Python the torch cp311 wheel needs) and libgomp1 (LightGBM's OpenMP), made with mmdebstrap
# and `podman import`ed. Elsewhere the Dockerfile's default base, python:3.11-slim, is pulled instead.
# Prints the base's tag: a hash of what mmdebstrap is asked for, so a base already made is reused at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
# minbase without documentation: about what python:3.11-slim holds, with Debian's Python in place of its own
debootstrap=(--variant=minbase --include=python3,python3-venv,libgomp1,ca-certificates
             --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
             --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
             --dpkgopt='path-exclude=/usr/share/info/*' bookworm - http://deb.debian.org/debian)
tag=localhost/edurank-base:bookworm-$(echo "${debootstrap[*]}" | sha256sum | cut -c1-12)
if podman image exists "$tag"; then
    echo "$tag"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "base.sh: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "base.sh: mmdebstrap's root mode needs root" >&2; exit 1; }
mmdebstrap --quiet "${debootstrap[@]}" \
  | podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' - "$tag" >/dev/null
# the torch wheel is cp311: a base with another Python is removed rather than cached
podman run --rm "$tag" python3 -c 'import sys, venv; assert sys.version_info[:2] == (3, 11), sys.version' >&2 \
    || { podman rmi "$tag" >/dev/null; exit 1; }
echo "$tag"
