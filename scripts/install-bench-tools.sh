#!/usr/bin/env bash
# wrk drives the HTTP benchmarks (Debian package). Idempotent.
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends wrk || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends wrk; }
