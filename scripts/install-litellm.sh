#!/usr/bin/env bash
# LiteLLM's proxy, for the side-by-side in `python -m bench proxy`, in a virtualenv of its
# own (bench/.litellm-venv): its pinned dependencies conflict with the project's. Idempotent
# and instant once the pinned version is there. A failure leaves its reason in
# bench/.litellm-venv.failed, which the bench reports instead of LiteLLM's numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.108.7
VENV=bench/.litellm-venv
STAMP="$VENV/.installed-$VERSION"
FAILED=bench/.litellm-venv.failed
[[ -f $STAMP ]] && exit 0

uv_cmd() {
  if command -v uv >/dev/null 2>&1; then uv "$@"; else python3 -m uv "$@"; fi
}
echo "==> installing litellm[proxy]==$VERSION into $VENV"
rm -f "$FAILED"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if uv_cmd venv --quiet --allow-existing --python 3.11 "$VENV" >"$log" 2>&1 \
  && uv_cmd pip install --quiet --python "$VENV/bin/python" "litellm[proxy]==$VERSION" >>"$log" 2>&1; then
  touch "$STAMP"
  exit 0
fi
{ echo "installing litellm[proxy]==$VERSION failed:"; tail -n 5 "$log"; } | tee "$FAILED" >&2
exit 1
