#!/usr/bin/env bash
# verify.sh - run `systemd-analyze verify` on the unit meson configured
# (BUILD_DIR/daemon/ecgpruned.service).  verify checks that ExecStart's
# binary exists, so the unit is checked from a scratch copy whose ExecStart
# points at the built daemon.
# Usage: systemd/verify.sh BUILD_DIR/daemon/ecgpruned
set -euo pipefail
daemon=$(realpath "${1:?usage: verify.sh PATH_TO_ECGPRUNED}")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed "s|^ExecStart=[^ ]*/ecgpruned |ExecStart=$daemon |" \
    "$(dirname "$daemon")/ecgpruned.service" > "$scratch/ecgpruned.service"
systemd-analyze verify "$scratch/ecgpruned.service"
echo "systemd-analyze verify: ecgpruned.service ok"
