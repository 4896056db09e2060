#!/usr/bin/env bash
# Install (or bring up to date) the project's virtual environment: uv, the locked
# dependencies, and torch. Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

uv_cmd() {
  if command -v uv >/dev/null 2>&1; then uv "$@"; else python3 -m uv "$@"; fi
}
if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "==> installing uv (pip install --user uv)"
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
fi

extras=(--extra torch --extra otel --extra embeddings-minilm)
case "$(uname -s)-$(uname -m)" in
  Darwin-arm64|Linux-x86_64|Linux-aarch64) extras+=(--extra mlx) ;;
esac
echo "==> uv sync ${extras[*]}"
# --inexact keeps torch, which is installed below rather than locked (see README: Setup recipe).
uv_cmd sync --frozen --inexact "${extras[@]}" --quiet
scripts/install-torch.sh
