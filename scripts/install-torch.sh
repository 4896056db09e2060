#!/usr/bin/env bash
# Install torch into .venv, choosing a build that suits the machine:
# - already importable: nothing to do;
# - pip is configured with a local wheel folder holding torch (this CI machine): use it;
# - Linux: PyTorch's CPU index (TORCH_INDEX), so nobody downloads a multi-GB CUDA build by
#   accident. For CUDA set TORCH_INDEX=https://download.pytorch.org/whl/cu128 (or "pypi");
# - macOS: PyPI's build, which includes MPS.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PY=.venv/bin/python

if "$PY" -c "import torch" >/dev/null 2>&1; then
  exit 0
fi
uv_cmd() {
  if command -v uv >/dev/null 2>&1; then uv "$@"; else python3 -m uv "$@"; fi
}
args=()
links="${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}"
for dir in $links; do
  if compgen -G "$dir/torch-${TORCH_VERSION}*.whl" >/dev/null; then
    args+=(--find-links "$dir")
  fi
done
if [[ ${#args[@]} -eq 0 && "$(uname -s)" == "Linux" ]]; then
  index="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  if [[ "$index" != "pypi" ]]; then
    args+=(--extra-index-url "$index" --index-strategy unsafe-best-match)
  fi
fi
echo "==> installing torch==${TORCH_VERSION} ${args[*]}"
uv_cmd pip install --python "$PY" --quiet "torch==${TORCH_VERSION}" "${args[@]}"
