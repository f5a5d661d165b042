#!/bin/sh
# The image's entry point: says at start when the artifacts folder is not writable by the user the container
# runs as (a host folder bind-mounted with -v is owned by its host user; the image's own user is uid 10001),
# then runs the command. Not fatal: a read-only folder still serves what is already trained in it, but an
# index built at start, a ranker trained at start and the feedback store (feedback.sqlite) cannot be written.
artifacts=${EDURANK_ARTIFACTS:-/artifacts}
if [ -d "$artifacts" ] && ! [ -w "$artifacts" ]; then
    echo "edurank: $artifacts is not writable by uid $(id -u) (it belongs to uid $(stat -c %u "$artifacts")):" \
         "nothing can be built or recorded there; run the container as its owner (docker run --user" \
         "\"\$(id -u):\$(id -g)\" ...), or make it writable by uid $(id -u)" >&2
fi
exec "$@"
