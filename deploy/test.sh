#!/usr/bin/env bash
# The test command: install (uv.lock), start local Kafka and Redis (PostgreSQL and the Redis
# Cluster start when the tests that need them do), then lint, type-check and test, printing
# how long each phase took (docs/testing.md). A full run ends with a quick benchmark.
# Services this script started are stopped at the end; ones already running are left alone.
# Extra arguments go to pytest.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

phase_names=() phase_seconds=() phase_started=0 phase_name=""
begin() { # begin NAME: end the phase before, start this one
  end_phase
  phase_name="$1" phase_started=$SECONDS
  echo "[fleet] $1" >&2
}
end_phase() {
  [[ -n "$phase_name" ]] || return 0
  phase_names+=("$phase_name") phase_seconds+=($((SECONDS - phase_started)))
  phase_name=""
}
report() { # the time of each phase, also when one failed (it is the last one listed)
  local rc=$?
  end_phase
  echo "[fleet] phases (seconds):" >&2
  for i in "${!phase_names[@]}"; do
    printf '[fleet]   %5d  %s\n' "${phase_seconds[$i]}" "${phase_names[$i]}" >&2
  done
  printf '[fleet]   %5d  in all (exit code %d)\n' "$SECONDS" "$rc" >&2
  if [[ -n "${stop_services:-}" ]]; then bash deploy/local/services.sh stop || true; fi
  exit "$rc"
}
trap report EXIT

begin "install: uv.lock into .venv"
bash deploy/setup.sh dev
begin "install: npm packages of tests/node (the openai client)"
bash deploy/local/node-clients.sh
begin "install: system packages (espeak-ng, sox, kcat)"
bash deploy/local/system-packages.sh || echo "[fleet] continuing: the speech and kcat tests will be skipped" >&2

# The type check runs while Kafka and Redis start (most of that phase is the JVM starting):
# the two overlap instead of adding up. Its output is printed when both are done, and its
# failure fails the command as before.
begin "services: Kafka and Redis, with ruff and mypy --strict beside them"
checks_log="$(mktemp)"
( .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy ) >"$checks_log" 2>&1 &
checks=$!
if ! bash deploy/local/services.sh status >/dev/null 2>&1; then
  stop_services=1
fi
bash deploy/local/services.sh start
checks_rc=0
wait "$checks" || checks_rc=$?
cat "$checks_log" >&2
rm -f "$checks_log"
if [[ $checks_rc -ne 0 ]]; then
  echo "[fleet] ruff or mypy failed (exit $checks_rc)" >&2
  exit "$checks_rc"
fi
# One pass: the secured suite (-m secured) drives every kind of Kafka client through
# SASL_SSL and mTLS, and the Redis Cluster runs the tests marked redis_cluster
# (docs/decisions/0023-one-test-pass.md).
begin "pytest"
.venv/bin/python -m pytest --durations=40 "$@"
# Last, after the whole suite passed: a minute's look at what a job costs next to a raw
# Kafka round trip and the direct model call (bench/quick.py). It prints ratios and never
# fails the command; FLEET_SKIP_QUICK_BENCH=1 skips it (docs/testing.md).
if [[ $# -eq 0 && "${FLEET_SKIP_QUICK_BENCH:-0}" != 1 ]]; then
  begin "bench: quick"
  # At most a minute: timeout signals its whole process group, the bench's own helper
  # processes (worker, responder) included.
  timeout -k 10 60 .venv/bin/python -m bench.quick \
    || echo "[fleet] bench: quick stopped (exit $?): not a failure" >&2
fi
