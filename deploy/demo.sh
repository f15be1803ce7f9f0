#!/usr/bin/env bash
# The main job: install, start local Kafka and Redis, run a generate worker, and stream a
# real answer from the local model to the terminal.   usage: deploy/demo.sh ["your prompt"]
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash deploy/setup.sh
bash deploy/local/services.sh start
exec .venv/bin/fleet demo "$@"
