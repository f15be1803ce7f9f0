#!/usr/bin/env bash
# The newcomer's path, timed: a fresh clone of this repository's HEAD in a private (0700)
# directory, with empty uv, pip and Maven caches, then `bash deploy/demo.sh` three times:
# the first run, a second one (services still running), and one after the services stopped
# (as after a reboot). Each output line is stamped with the seconds since its run began.
# Stops this clone's services at the end; the default ports must be free.
# usage: bash bench/first_run.sh [prompt]      (results: the README's "Two commands")
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prompt="${1:-Why is the sky blue?}"
work="$(mktemp -d)"; home="$(mktemp -d)"
git clone -q "$repo" "$work/clone"
cd "$work/clone"
export HOME="$home" MAVEN_OPTS="-Dmaven.repo.local=$home/.m2/repository"
export PYENV_ROOT="${PYENV_ROOT:-/root/.pyenv}"  # pyenv's shims find Python through it
stamp='import sys, time
t0 = float(sys.argv[1])
for line in sys.stdin:
    print(f"{time.time() - t0:6.1f}s {line}", end="", flush=True)'
run() {
  echo "== $1"
  local t0; t0="$(date +%s.%N)"
  { bash deploy/demo.sh "$prompt" 2>&1; echo "exit status $?"; } | python3 -c "$stamp" "$t0" \
    | grep -E 'worker ready|== |first chunk|heard by|exit status|installing|fetching|starting Kafka'
}
run "first run: fresh clone, empty caches"
run "second run: services running"
bash deploy/local/services.sh stop >/dev/null 2>&1
run "third run: services stopped before it"
bash deploy/local/services.sh stop >/dev/null 2>&1
rm -rf "$work" "$home"
