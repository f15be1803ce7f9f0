#!/usr/bin/env bash
# A three-broker Kafka cluster (KRaft, each node broker and controller) on loopback, for the
# tests that take a broker away: replication factor 3, min.insync.replicas 2.
# Node N (1-3) listens on FLEET_KAFKA_CLUSTER_PORT + 2(N-1) (default 19192, 19194, 19196),
# its controller on the port after it; FLEET_KAFKA_CLUSTER_PORTS="p1 c1 p2 c2 p3 c3" names
# the six ports instead (broker and controller of each node: ports the OS called free, for
# tests, which cannot count on consecutive ones), and overrides FLEET_KAFKA_CLUSTER_PORT.
# usage: deploy/local/kafka-cluster.sh start|stop|status|servers | kill N | start-node N
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/common.sh"
source "$here/kafka-common.sh"

if [[ -n "${FLEET_KAFKA_CLUSTER_PORTS:-}" ]]; then
  read -r -a PORTS <<<"$FLEET_KAFKA_CLUSTER_PORTS"
  [[ ${#PORTS[@]} -eq 6 ]] || die "FLEET_KAFKA_CLUSTER_PORTS needs six ports (p1 c1 p2 c2 p3 c3), not: $FLEET_KAFKA_CLUSTER_PORTS"
  for port in "${PORTS[@]}"; do
    [[ "$port" =~ ^[0-9]+$ ]] || die "FLEET_KAFKA_CLUSTER_PORTS: $port is not a port number"
  done
else
  base="${FLEET_KAFKA_CLUSTER_PORT:-19192}"
  PORTS=("$base" $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)) $((base + 5)))
fi
# Node 1's port names the cluster's files (the base port, by default).
CLUSTER_ID_PORT="${PORTS[0]}"
NODES=(1 2 3)
CLUSTER_HOME="$FLEET_HOME/kafka-cluster-$CLUSTER_ID_PORT"

port_of() { echo "${PORTS[$((2 * ($1 - 1)))]}"; }
controller_of() { echo "${PORTS[$((2 * ($1 - 1) + 1))]}"; }
pidfile_of() { echo "$FLEET_RUN_DIR/kafka-cluster-$CLUSTER_ID_PORT-node-$1.pid"; }
log_of() { echo "$FLEET_LOG_DIR/kafka-cluster-$CLUSTER_ID_PORT-node-$1.log"; }
conf_of() { echo "$CLUSTER_HOME/node-$1.properties"; }

servers() {
  local list=() n
  for n in "${NODES[@]}"; do list+=("127.0.0.1:$(port_of "$n")"); done
  (IFS=,; echo "${list[*]}")
}

write_config() { # write_config N
  local n=$1 voters=() m
  for m in "${NODES[@]}"; do voters+=("$m@127.0.0.1:$(controller_of "$m")"); done
  cat >"$(conf_of "$n")" <<CONF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://127.0.0.1:$(port_of "$n"),CONTROLLER://127.0.0.1:$(controller_of "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port_of "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$CLUSTER_HOME/data-$n
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
# A broker that stops heartbeating is fenced (its partitions led elsewhere) within 6 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
$KAFKA_COMMON_CONFIG
CONF
}

launch() { # launch N: in the background; the caller waits for its port
  local n=$1
  nohup java -cp "$LIBS/*" "${KAFKA_JAVA_OPTS[@]}" kafka.Kafka "$(conf_of "$n")" >>"$(log_of "$n")" 2>&1 &
  echo $! >"$(pidfile_of "$n")"
}

wait_node() {
  wait_for_port "Kafka node $1" "$(port_of "$1")" "${FLEET_KAFKA_START_TIMEOUT:-90}" "$(pidfile_of "$1")" "$(log_of "$1")"
}

running() { pid_alive "$(pidfile_of "$1")" && port_open "$(port_of "$1")"; }

start() {
  install_jars
  write_log4j
  mkdir -p "$CLUSTER_HOME"
  local cluster_id_file="$CLUSTER_HOME/cluster-id" n port
  [[ -f "$cluster_id_file" ]] || new_cluster_id >"$cluster_id_file"
  local started=() formats=() pid
  for n in "${NODES[@]}"; do
    running "$n" && continue
    for port in "$(port_of "$n")" "$(controller_of "$n")"; do
      port_open "$port" && die "port $port is taken; set FLEET_KAFKA_CLUSTER_PORT or FLEET_KAFKA_CLUSTER_PORTS"
    done
    write_config "$n"
    # Side by side: each format is a JVM of a few seconds.
    format_storage "$(conf_of "$n")" "$CLUSTER_HOME/data-$n" "$(log_of "$n")" "$(cat "$cluster_id_file")" &
    formats+=($!)
    started+=("$n")
  done
  for pid in "${formats[@]}"; do wait "$pid" || exit 1; done  # format_storage said why
  for n in "${started[@]}"; do launch "$n"; done
  # All at once: a node's listener opens only once a quorum of controllers is up.
  for n in "${started[@]}"; do wait_node "$n"; done
  say "Kafka cluster ready on $(servers)"
}

start_node() {
  running "$1" && return 0
  launch "$1"
  wait_node "$1"
}

kill_node() { # kill -9: no shutdown, nothing flushed
  local pidfile; pidfile="$(pidfile_of "$1")"
  pid_alive "$pidfile" && kill -9 "$(cat "$pidfile")"
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) for n in "${NODES[@]}"; do stop_pidfile "Kafka node $n" "$(pidfile_of "$n")"; done ;;
  status)
    rc=0
    for n in "${NODES[@]}"; do
      if running "$n"; then echo "node $n: running 127.0.0.1:$(port_of "$n")"; else echo "node $n: stopped"; rc=1; fi
    done
    exit $rc ;;
  servers) servers ;;
  kill) kill_node "${2:?usage: $0 kill N}" ;;
  start-node) start_node "${2:?usage: $0 start-node N}" ;;
  *) die "usage: $0 start|stop|status|servers | kill N | start-node N" ;;
esac
