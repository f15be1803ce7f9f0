#!/usr/bin/env bash
# The main job: install (uv.lock), start local Kafka and Redis, run one worker per job kind
# with the local models, stream a real answer to the terminal, then embed, search and
# transcribe through the fleet. Needs no root.   usage: deploy/demo.sh ["your prompt"]
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash deploy/setup.sh local
bash deploy/local/services.sh start
exec .venv/bin/fleet demo "$@"
