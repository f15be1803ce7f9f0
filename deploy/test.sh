#!/usr/bin/env bash
# The test command: install (uv.lock), start local Kafka and Redis (PostgreSQL starts when
# the pgvector tests need it), then lint, type-check and test.
# Services this script started are stopped at the end; ones already running are left alone.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash deploy/setup.sh dev
bash deploy/local/system-packages.sh || echo "[fleet] continuing: the speech and kcat tests will be skipped" >&2

if ! bash deploy/local/services.sh status >/dev/null 2>&1; then
  trap 'bash deploy/local/services.sh stop' EXIT
fi
bash deploy/local/services.sh start

echo "[fleet] ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[fleet] mypy --strict" >&2
.venv/bin/mypy
echo "[fleet] pytest" >&2
.venv/bin/python -m pytest "$@"
if (( $# == 0 )); then
  # The integration tests again, through the broker's SASL_SSL listener (SCRAM-SHA-512 and
  # the local CA): what a managed cluster asks of the SDK and the workers. Tests that start
  # brokers of their own (plain ones) ran once above.
  echo "[fleet] pytest: integration tests through Kafka's SASL_SSL listener" >&2
  FLEET_TEST_KAFKA=sasl_ssl .venv/bin/python -m pytest -m "kafka and not private_kafka" tests/integration
fi
