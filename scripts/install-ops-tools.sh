#!/usr/bin/env bash
# Installs Debian's nginx (the reverse proxy the ops tests run for real), prometheus (for
# promtool, which checks ops/prometheus/prometheus.yml) and strace (which shows where the
# server writes, against the Kubernetes manifests' read-only root). Idempotent: a tool already on PATH is
# left alone, and `apt-get update` runs only when a package is actually missing, so a warm
# machine costs no network round trip. Services are not started: the tests run nginx as a
# throwaway process and only need promtool from the prometheus package.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v strace >/dev/null 2>&1 || missing+=(strace)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "ops tools already installed: nginx, promtool, strace"
    exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101 keeps dpkg from starting the services it installs (the prometheus
# package would otherwise try to bind :9090 and the nginx one :80 on a developer machine).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
cleanup() {
    if [[ $created_policy -eq 1 ]]; then
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

$SUDO apt-get -o DPkg::Lock::Timeout=600 update
# Other installs may hold the dpkg lock (parallel setup scripts): wait instead of failing.
$SUDO apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"

echo "nginx: $(/usr/sbin/nginx -v 2>&1)"
echo "promtool: $(promtool --version 2>&1 | head -n 1)"
echo "strace: $(strace -V | head -n 1)"
