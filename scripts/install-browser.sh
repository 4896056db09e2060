#!/usr/bin/env bash
# Installs Debian's Chromium for the end-to-end playground test (driven by playwright-core).
# Idempotent: does nothing when /usr/bin/chromium is already there. `apt-get update` runs only
# when the first install attempt fails, so a warm package cache costs no network round trip.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends chromium
fi
/usr/bin/chromium --version
