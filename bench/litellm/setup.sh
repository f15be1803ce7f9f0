#!/usr/bin/env bash
# Installs bench/litellm/uv.lock (LiteLLM's proxy) into a virtual environment of its own under
# $FLEET_HOME/tools, once per lock, and prints that environment's directory.
# usage: bash bench/litellm/setup.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/local/common.sh"
project="$REPO_ROOT/bench/litellm"
venv="$FLEET_HOME/tools/litellm-$(sha256sum "$project/uv.lock" | cut -c1-16)"
UV="$FLEET_HOME/tools/uv-0.13.9/bin/uv"  # deploy/setup.sh installed it, or uv on PATH
[[ -x "$UV" ]] || UV="$(command -v uv)" || die "no uv: run deploy/setup.sh first"
if [[ ! -x "$venv/bin/litellm" ]]; then
  # --compile-bytecode: the proxy imports modules lazily while it serves; compiled here, not
  # on a request's time (nor on every request where PYTHONDONTWRITEBYTECODE is set).
  say "installing LiteLLM's proxy (bench/litellm/uv.lock) into $venv (once)"
  UV_PROJECT_ENVIRONMENT="$venv" UV_PYTHON_DOWNLOADS=never "$UV" sync --quiet --locked --compile-bytecode \
    --project "$project" --python "${PYTHON:-python3}" \
    || die "uv could not install LiteLLM's proxy (see above)"
fi
echo "$venv"
