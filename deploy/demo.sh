#!/usr/bin/env bash
# The main job: install, start local Kafka, Redis and PostgreSQL, run one worker per job kind
# with the local models, stream a real answer to the terminal, then embed, search and
# transcribe through the fleet.   usage: deploy/demo.sh ["your prompt"]
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash deploy/setup.sh
bash deploy/local/system-packages.sh || echo "[fleet] continuing: the demo skips speech" >&2
bash deploy/local/services.sh start
exec .venv/bin/fleet demo "$@"
